"""A neuron in its own process, so a test can kill -9 it mid-task.

    python neuron_proc.py '{"base_url":..., "token":..., "neuron_id":..., "capability":..., "concurrency": 1}'

Prints one JSON object per line on stdout: {"event": "registered"} once the
gateway accepted the registration, {"event": "started", "taskId", "leaseId",
"attempt"} when a handler starts. Handlers never finish: the process is meant
to be killed. Standalone on purpose (imports only the SDK).
"""

import asyncio
import json
import sys

from holokai_neuron_sdk import Capability, Neuron


def emit(**obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args) -> None:
    async def handler(input, ctx):
        emit(event="started", taskId=ctx.task.task_id, leaseId=ctx.lease_id, attempt=ctx.task.attempt)
        await asyncio.sleep(3600)

    neuron = Neuron(
        gateway_url=args["base_url"],
        neuron_id=args["neuron_id"],
        auth=lambda: args["token"],
        heartbeat_interval_ms=int(args.get("heartbeat_ms", 10_000)),
    )
    neuron.register_handler(
        Capability(type=args["capability"], scope="any", concurrency=int(args.get("concurrency", 1))),
        handler,
    )
    neuron.on("connection:registered", lambda info: emit(event="registered"))
    await neuron.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
