"""Governance route topics are reserved (README "Operations: Reserved topics"):
a tenant submitting a task onto one through the task API gets 403
`reserved_topic`, whatever credential it uses, and nothing is enqueued there.
The suite's gateways run the default governance section: `default_topic`
is `gateway/run`. The SDK has no task client, so tasks go in over raw HTTP
with the tenant's bearer credential, as everywhere in this suite."""

from __future__ import annotations

import requests
from intent_bus import IntentClient

from agw_testkit.neuron import capability
from agw_testkit.responses import describe

GOV_TOPIC = "gateway/run"


def _reserved(res: requests.Response) -> None:
    assert res.status_code == 403, describe(res)
    body = res.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), describe(res)
    assert body["error"].get("code") == "reserved_topic", describe(res)
    msg = body["error"].get("message")
    assert isinstance(msg, str) and GOV_TOPIC in msg, describe(res)


def test_task_onto_the_governance_topic_is_refused(tenant, neurons, cap):
    jwt_tasks = tenant.tasks_as(tenant.token())
    for api in (jwt_tasks, tenant.tasks, tenant.tasks_as(tenant.api_key, style="x-api-key")):
        _reserved(api.submit(GOV_TOPIC, {"input": "skip the policy"}))
    _reserved(jwt_tasks.submit(GOV_TOPIC, {"input": "x"}, onBehalfOf="someone", maxAttempts=1, priority=1000,
                               metadata={"why": "test"}))

    # Nothing was enqueued: an Intent Bus claim on the topic (same job store) is answered, empty.
    c = IntentClient(base_url=tenant.gw.base_url, api_key=tenant.api_key, timeout=15.0)
    try:
        job = c.claim(goal=GOV_TOPIC)
        assert job.status_code == 204 and not job, f"a job was enqueued on {GOV_TOPIC}: {job.status_code}"
    finally:
        c.close()
    # Workers may still serve the topic: a neuron registers the capability.
    neurons(tenant.gw, tenant.token()).add(capability(GOV_TOPIC, 2), _never).start()

    # A normal capability is open as ever.
    tid = jwt_tasks.create(cap, {"n": 1})
    assert jwt_tasks.cancel(tid).status_code == 200


async def _never(input, ctx):
    raise AssertionError(f"no task may reach the reserved topic, got {input!r}")
