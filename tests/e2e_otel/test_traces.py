"""Request spans join the caller's W3C trace, workers receive the trace
context (Intent Bus claim response, neuron lease `task.metadata`), and each
execution event arrives as an OTLP log record in the publisher's trace."""

from __future__ import annotations

import json
import secrets
import uuid

import requests

from intent_bus import IntentClient
from agw_testkit.gateway import running_gateway
from conftest import otel_settings
from otlp_receiver import SPAN_KIND_SERVER, parse_traceparent, traceparent


def new_trace():
    return secrets.token_hex(16), secrets.token_hex(8)


def sdk(gw, api_key: str, tp: str = "") -> IntentClient:
    """An unmodified 2.1.2 client; `tp` goes on every request it sends, as an
    instrumented `requests` session would send it."""
    c = IntentClient(base_url=gw.base_url, api_key=api_key, timeout=15.0)
    if tp:
        c.transport.session.headers["traceparent"] = tp
    return c


def run_intent(gw, api_key, trace_id, client_span, worker_span):
    """Publish (traced), claim (untraced), fulfill (traced by the worker)."""
    goal = f"otel-{uuid.uuid4().hex[:10]}"
    publisher = sdk(gw, api_key, traceparent(trace_id, client_span))
    intent_id = publisher.publish(goal, {"n": 1}).id
    worker = sdk(gw, api_key)
    claim = worker.claim(goal=goal)
    assert claim and claim.get("id") == intent_id, claim
    seen = parse_traceparent(claim.get("traceparent"))
    worker.transport.session.headers["traceparent"] = traceparent(trace_id, worker_span)
    worker.fulfill(intent_id, claim.get("claim_token"), result={"ok": True})
    return goal, intent_id, seen


def test_intent_bus_spans_join_the_callers_trace_and_the_worker_gets_it(gw, receiver, api_key):
    trace_id, client_span = new_trace()
    worker_span = secrets.token_hex(8)
    goal, intent_id, seen = run_intent(gw, api_key, trace_id, client_span, worker_span)

    # The claim response hands the worker the publisher's trace.
    assert seen is not None and seen["trace_id"] == trace_id, seen

    spans = receiver.collected.wait_spans(
        lambda s: s["trace_id"] == trace_id, n=2, what=f"in trace {trace_id}")
    by_name = {s["name"]: s for s in spans}
    publish = by_name.get("POST /intent")
    assert publish is not None, spans
    assert publish["parent_span_id"] == client_span
    assert publish["kind"] == SPAN_KIND_SERVER
    assert publish["attributes"]["http.route"] == "/intent"
    assert publish["attributes"]["http.response.status_code"] == 201
    assert publish["resource"]["service.name"] == "agw-e2e"
    assert publish["resource"]["deployment.environment"] == "e2e"
    # The worker's context is the publish span itself.
    assert seen["span_id"] == publish["span_id"]

    # The settlement span is a child of the worker's own span.
    fulfill = by_name.get("POST /fulfill/{id}")
    assert fulfill is not None, spans
    assert fulfill["parent_span_id"] == worker_span
    assert fulfill["attributes"]["http.response.status_code"] == 200


def test_execution_event_is_a_log_record_in_the_publishers_trace(gw, receiver, api_key):
    trace_id, client_span = new_trace()
    goal, intent_id, seen = run_intent(gw, api_key, trace_id, client_span, secrets.token_hex(8))
    logs = receiver.collected.wait_logs(
        lambda r: r["attributes"].get("correlation_id") == intent_id,
        what=f"for intent {intent_id} (execution event of its fulfillment)")
    rec = logs[0]
    assert rec["trace_id"] == trace_id
    assert rec["span_id"] == seen["span_id"]
    assert rec["event_name"] == "intentproof.execution_event"
    event = json.loads(rec["body"])
    assert event["event_id"] == rec["attributes"]["event_id"]
    assert event["correlation_id"] == intent_id
    assert event["action"] == rec["attributes"]["action"] == f"intent_bus.{goal}"
    assert event["status"] == rec["attributes"]["status"] == "ok"
    assert rec["attributes"]["chain_position"] == event["chain_position"]
    assert rec["resource"]["service.name"] == "agw-e2e"


def test_neuron_lease_metadata_carries_the_submitters_trace(gw, receiver):
    from agw_testkit.neuron import Calls, NeuronHandle, capability, ctx_info
    from agw_testkit.tenants import mint_token

    owner = f"otel-neuron-{uuid.uuid4().hex[:8]}"
    key = gw.generate_key(owner)
    cap = f"otel-{uuid.uuid4().hex[:8]}/echo"
    calls = Calls()

    async def echo(input, ctx):
        calls.add(**ctx_info(ctx))
        return input

    neuron = NeuronHandle(gw.base_url, mint_token(gw, "otel-neuron", owner)).add(capability(cap), echo)
    try:
        neuron.start()
        trace_id, client_span = new_trace()
        res = requests.post(
            gw.base_url + "/api/v1/tasks",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                     "traceparent": traceparent(trace_id, client_span)},
            data=json.dumps({"capability": cap, "input": {"x": 1}, "metadata": {"workflowId": "wf-1"}}),
            timeout=15,
        )
        assert res.status_code == 201, res.text
        call = calls.wait(1, what="the neuron's lease")[0]
    finally:
        neuron.close()
    metadata = call["metadata"]
    assert metadata["workflowId"] == "wf-1", metadata
    seen = parse_traceparent(metadata.get("traceparent"))
    assert seen is not None and seen["trace_id"] == trace_id, metadata
    submit = receiver.collected.wait_spans(
        lambda s: s["trace_id"] == trace_id and s["name"] == "POST /api/v1/tasks",
        what="for the task submission")[0]
    assert submit["parent_span_id"] == client_span
    assert seen["span_id"] == submit["span_id"]


def test_an_untraced_request_starts_its_own_trace(gw, receiver):
    res = requests.get(gw.base_url + "/healthz", timeout=10)
    assert res.status_code == 200
    span = receiver.collected.wait_spans(
        lambda s: s["name"] == "GET /healthz", what="for GET /healthz")[0]
    assert span["parent_span_id"] == "" and len(span["trace_id"]) == 32


def test_sampled_out_requests_build_no_span_but_keep_one_trace(receiver):
    """OTEL_TRACES_SAMPLER=parentbased_traceidratio at 0: an untraced publish
    is sampled out before its span is built (none is exported), yet its
    worker still gets a trace context (a new one, flagged unsampled) and the
    execution event's log record carries that trace; a caller whose context
    is sampled still gets the gateway's span (parent-based)."""
    env = otel_settings(receiver.url, OTEL_TRACES_SAMPLER="parentbased_traceidratio",
                        OTEL_TRACES_SAMPLER_ARG="0")
    with running_gateway(env, name="otel-sampled") as g:
        api_key = g.new_tenant("sampled")
        goal = f"otel-{uuid.uuid4().hex[:10]}"
        intent_id = sdk(g, api_key).publish(goal, {"n": 1}).id
        worker = sdk(g, api_key)
        claim = worker.claim(goal=goal)
        assert claim and claim.get("id") == intent_id, claim
        seen = parse_traceparent(claim.get("traceparent"))
        assert seen is not None and seen["flags"] == "00", claim.get("traceparent")
        worker.fulfill(intent_id, claim.get("claim_token"), result={"ok": True})
        rec = receiver.collected.wait_logs(
            lambda r: r["attributes"].get("correlation_id") == intent_id,
            what=f"for intent {intent_id}")[0]
        assert (rec["trace_id"], rec["span_id"]) == (seen["trace_id"], seen["span_id"])

        # A sampled caller: the gateway's span is built and exported. It ends
        # after the sampled-out requests above, so by the time it is in,
        # any span of theirs would be too.
        trace_id, client_span = new_trace()
        res = requests.get(g.base_url + "/healthz", timeout=10,
                           headers={"traceparent": traceparent(trace_id, client_span)})
        assert res.status_code == 200
        span = receiver.collected.wait_spans(
            lambda s: s["trace_id"] == trace_id, what="for the sampled caller")[0]
        assert span["parent_span_id"] == client_span
        every = receiver.collected.wait_spans(lambda s: True, what="at all")
        assert not [s for s in every if s["trace_id"] == seen["trace_id"]], "no span of the sampled-out trace"
