"""`concurrency` is a promise the gateway keeps: never more leases in flight on
one neuron's capability than it registered (neuron.md "Capability").

The SDK's own semaphore would hide an over-push from the handler, so besides
the handler-level count each neuron has a LeaseLedger counting leases from
the moment their frame arrives until the handler finishes."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from agw_testkit.neuron import InFlight, LeaseLedger, capability

BURST = 50


def _wait_all(api, ids, timeout):
    pending = set(ids)
    outputs = {}
    deadline = time.monotonic() + timeout
    while pending:
        for tid in list(pending):
            t = api.task(tid)
            if t["state"] == "fulfilled":
                outputs[tid] = t["output"]
                pending.discard(tid)
            else:
                assert t["state"] in ("open", "leased"), f"task {tid} went {t['state']}: {t}"
        if pending:
            assert time.monotonic() < deadline, (
                f"{len(pending)} of {len(ids)} tasks not fulfilled after {timeout}s, e.g. {api.task(next(iter(pending)))}")
            time.sleep(0.1)
    return outputs


def test_burst_respects_concurrency(tenant, neurons, cap):
    limits = {"n3": 3, "n2": 2}
    inflight = {k: InFlight() for k in limits}
    handled = {k: [] for k in limits}
    ledgers = {}

    def make_handler(name):
        async def handler(input, ctx):
            inflight[name].enter()
            try:
                handled[name].append(ctx.task.task_id)
                await asyncio.sleep(0.08)
                return {"i": input["i"], "by": name}
            finally:
                inflight[name].exit()
                ledgers[name].done(ctx.lease_id)

        return handler

    for name, conc in limits.items():
        h = neurons(tenant.gw, tenant.token(name), neuron_id=f"{name}-{cap.split('/')[0]}")
        h.add(capability(cap, conc), make_handler(name))
        ledgers[name] = LeaseLedger(h)
        h.start()

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda i: tenant.tasks.create(cap, {"i": i}), range(BURST)))
    outputs = _wait_all(tenant.tasks, ids, timeout=60)

    assert sorted(o["i"] for o in outputs.values()) == list(range(BURST))
    all_handled = handled["n3"] + handled["n2"]
    assert sorted(all_handled) == sorted(ids), "every task handled exactly once"
    for name, conc in limits.items():
        assert ledgers[name].max_outstanding <= conc, (
            f"gateway pushed {ledgers[name].max_outstanding} leases at once to {name} "
            f"(concurrency {conc})")
        assert inflight[name].max <= conc, (name, inflight[name].max)
        assert handled[name], f"{name} got no work: the gateway must dispatch to every eligible neuron"
    assert max(led.max_outstanding for led in ledgers.values()) >= 2, (
        "no neuron ever held two leases: the gateway does not use the registered concurrency")


def test_update_capability_lowers_the_limit(tenant, neurons, cap):
    inflight = InFlight()
    box = {}

    async def handler(input, ctx):
        inflight.enter()
        try:
            await asyncio.sleep(0.05)
            return {"i": input["i"]}
        finally:
            inflight.exit()
            box["ledger"].done(ctx.lease_id)

    h = neurons(tenant.gw, tenant.token()).add(capability(cap, 4), handler)
    box["ledger"] = LeaseLedger(h)
    h.start()
    h.update_capability(cap, concurrency=1)  # POST /neuron/update-capability, awaited
    assert not h.records("update-capability POST failed"), h.log_lines()

    ids = [tenant.tasks.create(cap, {"i": i}) for i in range(10)]
    _wait_all(tenant.tasks, ids, timeout=30)
    assert box["ledger"].max_outstanding <= 1, (
        f"after update-capability concurrency=1 the gateway still pushed {box['ledger'].max_outstanding} at once")
