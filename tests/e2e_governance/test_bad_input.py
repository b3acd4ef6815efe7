"""Every malformed request gets a clear 4xx with a JSON body, and nothing
happens: no job enqueued (an Intent Bus claim on the topics finds nothing),
no trace stored (the tenant's stability counters do not move)."""

from __future__ import annotations

import json

import pytest

from agw_testkit.responses import describe
from gov_support.api import GovApi, error_of, json_of, run_body
from gov_support.config import DEEP_TOPIC, DEFAULT_TOPIC, SUMMARIZE_TOPIC

NOT_JSON = object()
EMPTY = object()


def _send(gov: GovApi, method: str, path: str, body):
    if body is NOT_JSON:
        return gov.request(method, path, raw=b"{not json")
    if body is EMPTY:
        return gov.request(method, path, raw=b"")
    return gov.request(method, path, raw=json.dumps(body).encode())


def _opts(**o):
    return {"input": "hello", "context": {"session_id": None, "agent_id": None, "mode_hint": None},
            "options": {"timeout_ms": 1000, "stream": False, **o}}


def _ctx(**c):
    return {"input": "hello", "context": {"session_id": None, "agent_id": None, "mode_hint": None, **c},
            "options": {"timeout_ms": 1000}}


# (id, body) -> 422 invalid_input on /api/v1/run and /api/v1/run/stream
RUN_422 = [
    ("not-json", NOT_JSON),
    ("empty-body", EMPTY),
    ("array", [run_body()]),
    ("string", "hello"),
    ("input-missing", {"context": {}, "options": {}}),
    ("input-number", {"input": 5}),
    ("input-null", {"input": None}),
    ("input-list", {"input": ["a", "b"]}),
    ("input-object", {"input": {"text": "hi"}}),
    ("context-string", {"input": "hi", "context": "ctx"}),
    ("context-list", {"input": "hi", "context": []}),
    ("options-number", {"input": "hi", "options": 5}),
    ("options-string", {"input": "hi", "options": "fast"}),
    ("mode-unknown", _ctx(mode_hint="turbo")),
    ("mode-empty", _ctx(mode_hint="")),
    ("mode-number", _ctx(mode_hint=3)),
    ("mode-uppercase", _ctx(mode_hint="DEEP")),
    ("timeout-zero", _opts(timeout_ms=0)),
    ("timeout-negative", _opts(timeout_ms=-5)),
    ("timeout-float", _opts(timeout_ms=1.5)),
    ("timeout-string", _opts(timeout_ms="1000")),
    ("timeout-bool", _opts(timeout_ms=True)),
    ("timeout-over-max", _opts(timeout_ms=300001)),
    ("timeout-huge", _opts(timeout_ms=10 ** 30)),
]


@pytest.mark.parametrize("path", ["/api/v1/run", "/api/v1/run/stream"], ids=["run", "stream"])
def test_run_bodies_refused_with_422(gw, tenant, gov, claimers, path):
    before = gov.counts()
    failures = []
    for case_id, body in RUN_422:
        res = _send(gov, "POST", path, body)
        try:
            error_of(res, 422, "invalid_input")
        except AssertionError as e:
            failures.append(f"{case_id}: {e}")
    assert not failures, "\n".join(failures)
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC)
    assert gov.counts() == before, "a refused request stores no trace"


def test_unknown_agent_is_404_on_agents_run(gw, tenant, gov, claimers):
    """agents.run names the agent to run: an unlisted one is 404. (On run, run_stream
    and chat, agent_id is only who is calling: an unlisted one is served --
    test_unlisted_agents.py.)"""
    before = gov.counts()
    body = error_of(gov.agents_run({"agent_id": "ghost", "task": "x", "config": None}), 404, "unknown_agent")
    assert "ghost" in body["message"], body
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC)
    assert gov.counts() == before


# (route, body): any 4xx with a JSON object body carrying "error"
OTHER_4XX = [
    ("POST", "/api/chat", NOT_JSON),
    ("POST", "/api/chat", {}),
    ("POST", "/api/chat", {"message": 5, "session_id": None}),
    ("POST", "/api/chat", {"message": "hi", "session_id": 7}),
    ("POST", "/api/agents/run", NOT_JSON),
    ("POST", "/api/agents/run", {"task": "x", "config": None}),
    ("POST", "/api/agents/run", {"agent_id": "summarizer", "config": None}),
    ("POST", "/api/agents/run", {"agent_id": "summarizer", "task": 5, "config": None}),
    ("POST", "/api/agents/run", {"agent_id": "summarizer", "task": "x", "config": "cfg"}),
    ("POST", "/api/governance/explain", NOT_JSON),
    ("POST", "/api/governance/explain", {"command_type": "run", "command_input": "password: x"}),
    ("POST", "/api/governance/explain", {"command_type": 5, "command_input": {}}),
    ("POST", "/api/secrets", NOT_JSON),
    ("POST", "/api/secrets", {"credential_ref": "k"}),
    ("POST", "/api/secrets", {"credential_ref": 5, "secret": "v", "provider": "p", "allowed_tools": []}),
    # Far over any body limit (the governance routes take bodies up to >= 64 KiB, so that
    # an oversize input is decided and traced): refused before any decision.
    ("POST", "/api/v1/run", {"input": "x" * (4 << 20)}),
]


def test_other_routes_refuse_bad_bodies_with_json_4xx(gw, tenant, gov, claimers):
    before = gov.counts()
    failures = []
    for method, path, body in OTHER_4XX:
        res = _send(gov, method, path, body)
        label = f"{method} {path} {'<not json>' if body is NOT_JSON else json.dumps(body)[:80]}"
        if not (400 <= res.status_code < 500):
            failures.append(f"{label}: expected a 4xx, got {describe(res)}")
            continue
        try:
            b = json_of(res)
            assert isinstance(b, dict) and b.get("error"), f"no error field: {describe(res)}"
        except AssertionError as e:
            failures.append(f"{label}: {e}")
    assert not failures, "\n".join(failures)
    claimers(gw, tenant).assert_nothing_on(DEFAULT_TOPIC, DEEP_TOPIC, SUMMARIZE_TOPIC)
    assert gov.counts() == before


def test_unauthenticated_requests_are_401_json(gw):
    anon = GovApi(gw.base_url, None)
    bad = GovApi(gw.base_url, "not-a-real-key")
    forged_jwt = GovApi(gw.base_url, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    routes = [
        ("POST", "/api/v1/run", run_body()),
        ("POST", "/api/v1/run/stream", run_body(stream=True)),
        ("GET", "/api/governance/trace/00000000-0000-4000-8000-000000000000", None),
        ("POST", "/api/governance/explain", {"command_type": "run", "command_input": {}}),
        ("GET", "/api/governance/stability", None),
        ("GET", "/api/system/config", None),
        ("GET", "/api/system/metrics", None),
        ("POST", "/api/chat", {"message": "hi", "session_id": None}),
        ("POST", "/api/agents/run", {"agent_id": "summarizer", "task": "x", "config": None}),
        ("POST", "/api/secrets", {"credential_ref": "k", "secret": "v", "provider": "p", "allowed_tools": []}),
        ("GET", "/api/secrets/k", None),
        ("DELETE", "/api/secrets/k", None),
    ]
    failures = []
    for api, who in ((anon, "no header"), (bad, "unknown key"), (forged_jwt, "forged JWT")):
        for method, path, body in routes:
            res = api.request(method, path, body)
            if res.status_code != 401:
                failures.append(f"{who}: {describe(res)}")
                continue
            try:
                json_of(res)
            except AssertionError as e:
                failures.append(f"{who}: {e}")
    assert not failures, "\n".join(failures)
    # The one open route.
    assert anon.system("status").status_code == 200
