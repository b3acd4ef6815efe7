"""Run one Intent Bus action with whatever `intent-bus` this interpreter has.

Invoked by the cross-version tests with the OTHER venv's python:
    python other_sdk.py '{"action": "...", "base_url": ..., "api_key": ..., ...}'
Prints one JSON object on stdout. Standalone on purpose (imports only the SDK).
"""

import json
import sys
import time

import intent_bus
from intent_bus import IntentClient

VERSION = intent_bus.__version__
V2 = int(VERSION.split(".")[0]) >= 2


def main() -> int:
    args = json.loads(sys.argv[1])
    c = IntentClient(base_url=args["base_url"], api_key=args["api_key"], timeout=15.0)
    action = args["action"]
    out = {"version": VERSION}

    if action == "publish":
        res = c.publish(args["goal"], args["payload"], namespace=args.get("namespace", "default"),
                        visibility=args.get("visibility", "private"))
        out["id"] = res.id if V2 else res["id"]

    elif action == "work":
        deadline = time.monotonic() + float(args.get("timeout", 10))
        job = None
        while time.monotonic() < deadline:
            job = c.claim(args["goal"], namespace=args.get("namespace", "default"))
            if job and job.status_code == 200:
                break
            job = None
            time.sleep(0.1)
        if job is None:
            out["error"] = "nothing claimed"
            print(json.dumps(out))
            return 3
        payload = job.get("payload")
        result = {"worker_sdk": VERSION, "echo": payload}
        if V2:
            c.fulfill(job.id, job.claim_token, result=result)
        else:
            c.fulfill(job["id"], **result)
        out.update(id=job.get("id"), payload=payload, claim_token=job.get("claim_token"))

    else:
        out["error"] = f"unknown action {action}"
        print(json.dumps(out))
        return 2

    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
