"""Policy hot reload: the gateway re-reads its config file when it changes
(mtime polled each second) or on SIGHUP; only [governance] is applied live.
An invalid file is refused: the old policy stays in force, stability shows
policy_error, system status is DEGRADED, until a valid file clears it.
A reload is detected by polling stability until policy_version changes."""

from __future__ import annotations

import signal

import pytest
from hestiaos import GovernanceBlock, SystemStatus

from agw_testkit.tenants import new_tenant
from gov_support.api import GovApi, error_of
from gov_support.config import gateway_config, policy
from gov_support.sdk import sync_client

pytestmark = pytest.mark.slow


def _cfg(name: str, *words: str, **over) -> str:
    """A policy that blocks inputs containing any of `words` (rule id "no-<word>")."""
    deny = [{"id": f"no-{w}", "pattern": f"(?i){w}", "reason": f"no {w} allowed"} for w in words]
    return gateway_config(policy(name, deny=deny, **over))


def _decision(api: GovApi, text: str) -> str:
    return api.explain("run", {"input": text})["decision"]


def _status(g) -> SystemStatus:
    return sync_client(g.base_url, None).system.status()


INVALID = [
    ("bad-regex", lambda: _cfg("broken", "banana").replace('pattern = "(?i)banana"', 'pattern = "(unclosed"'), "unclosed"),
    ("unknown-key", lambda: _cfg("broken", "banana").replace("[governance.policy]\n",
                                                              "[governance.policy]\nsurprise_key = 1\n"), "surprise_key"),
    ("wrong-type", lambda: _cfg("broken", "banana").replace("max_input_bytes = 2048",
                                                             'max_input_bytes = "lots"'), "max_input_bytes"),
    ("not-toml", lambda: _cfg("broken", "banana") + "\n[governance\n", None),
]


def test_edit_changes_the_decision(gateway_factory):
    g = gateway_factory("reload-edit", _cfg("before", "banana"))
    t = new_tenant(g, "reload")
    api = GovApi(g.base_url, t.api_key)
    s1 = api.stability()
    assert s1["policy"] == f"before@{s1['policy_version']}" and s1["policy_error"] is None, s1
    assert (_decision(api, "a banana split"), _decision(api, "cherry pie")) == ("BLOCK", "ALLOW")

    g.write_config(_cfg("after", "cherry"))
    s2 = api.wait_new_version(s1["policy_version"])
    assert s2["policy"] == f"after@{s2['policy_version']}" and s2["policy_error"] is None, s2
    assert s2["policy_loaded_at"] != s1["policy_loaded_at"], (s1, s2)
    assert (_decision(api, "a banana split"), _decision(api, "cherry pie")) == ("ALLOW", "BLOCK")

    body = error_of(api.run(input="cherry on top"), 403, "governance_block")
    tr = api.trace(body["trace_id"])
    assert (tr["policy"], tr["matched_rules"], tr["reason"]) == (s2["policy"], ["no-cherry"], "no cherry allowed"), tr
    assert _status(g).status == "OK"


def test_reload_applies_new_limits_and_routes(gateway_factory):
    g = gateway_factory("reload-limits", _cfg("limits", "banana"))
    api = GovApi(g.base_url, new_tenant(g, "limits").api_key)
    v1 = api.stability()["policy_version"]
    assert _decision(api, "x" * 1500) == "ALLOW"
    g.write_config(_cfg("limits", "banana", max_input_bytes=1000, default_mode="fast"))
    s = api.wait_new_version(v1)
    assert s["mode"] == "fast", s
    ex = api.explain("run", {"input": "x" * 1500})
    assert (ex["decision"], ex["matched_rules"]) == ("BLOCK", ["max-input-size"]), ex
    assert api.explain("run", {"input": "short"})["mode"] == "fast"


def test_invalid_file_keeps_the_old_policy(gateway_factory):
    good = [_cfg("good-a", "banana"), _cfg("good-b", "banana", "kiwi")]
    g = gateway_factory("reload-invalid", good[0])
    t = new_tenant(g, "invalid")
    api = GovApi(g.base_url, t.api_key)
    current = api.stability()
    failures = []
    for i, (case, make, needle) in enumerate(INVALID):
        log_mark = g.stderr_path.stat().st_size
        g.write_config(make())
        s = api.wait_policy(lambda s: s["policy_error"], f"{case}: policy_error to be set")
        err = s["policy_error"]
        assert isinstance(err, str) and err, s
        assert s["policy_version"] == current["policy_version"] and s["policy"] == current["policy"], (
            f"{case}: an invalid file must not replace the policy: {current} -> {s}")
        assert _status(g).status == "DEGRADED", f"{case}: system status must be DEGRADED while policy_error is set"
        assert _decision(api, "banana bread") == "BLOCK", f"{case}: the old policy must stay in force"
        assert _decision(api, "plain bread") == "ALLOW"
        body = error_of(api.run(input="banana"), 403, "governance_block")
        assert api.trace(body["trace_id"])["policy"] == current["policy"]
        if needle is not None:
            if needle not in err:
                failures.append(f"{case}: policy_error does not name {needle!r}: {err!r}")
            log = g.stderr_path.read_bytes()[log_mark:].decode("utf-8", "replace")
            if needle not in log:
                failures.append(f"{case}: the refused reload is not logged (no {needle!r} in the new log lines)")

        # A valid file clears the error (alternate contents so that the version moves).
        nxt = good[(i + 1) % 2]
        g.write_config(nxt)
        s = api.wait_policy(lambda s: s["policy_error"] is None and s["policy_version"] != current["policy_version"],
                            f"{case}: a valid file to clear policy_error and load")
        assert _status(g).status == "OK"
        current = s
        expect_kiwi = "BLOCK" if "kiwi" in nxt else "ALLOW"
        assert _decision(api, "kiwi juice") == expect_kiwi, f"{case}: the valid file after it is in force"
    assert not failures, "\n".join(failures)


def test_sighup_reloads(gateway_factory):
    first = _cfg("hup-1", "banana")
    g = gateway_factory("reload-hup", first)
    api = GovApi(g.base_url, new_tenant(g, "hup").api_key)
    v1 = api.stability()["policy_version"]
    # Same size and same mtime: the mtime/size poll cannot see the change, only the
    # signal tells the daemon to read the file again.
    second = _cfg("hup-2", "cherry")
    assert len(second) == len(first)
    g.write_config(second, keep_mtime=True)
    g.proc.send_signal(signal.SIGHUP)
    s = api.wait_new_version(v1)
    assert s["policy"] == f"hup-2@{s['policy_version']}", s
    assert g.alive(), "SIGHUP must reload, not stop the daemon"
    assert (_decision(api, "banana"), _decision(api, "cherry")) == ("ALLOW", "BLOCK")

    # An invalid file through SIGHUP is refused the same way.
    third = second.replace("block_factor = 2.0", 'block_factor = "2"')
    assert len(third) == len(second) and third != second
    g.write_config(third, keep_mtime=True)
    g.proc.send_signal(signal.SIGHUP)
    s = api.wait_policy(lambda s: s["policy_error"], "policy_error after SIGHUP with an invalid file")
    assert s["policy"].startswith("hup-2@"), s
    assert g.alive()
    assert _decision(api, "cherry") == "BLOCK"
    assert _status(g).status == "DEGRADED"


def test_tenant_lists_reload(gateway_factory):
    g = gateway_factory("reload-tenants", _cfg("tenants", "banana"))
    a, b = new_tenant(g, "alpha"), new_tenant(g, "beta")
    api_a, api_b = GovApi(g.base_url, a.api_key), GovApi(g.base_url, b.api_key)
    v = api_a.stability()["policy_version"]
    g.write_config(_cfg("tenants", "banana", allow_tenants=[a.owner]))
    api_a.wait_new_version(v)
    assert _decision(api_a, "hello") == "ALLOW"
    ex = api_b.explain("run", {"input": "hello"})
    assert (ex["decision"], ex["matched_rules"], ex["risk_score"]) == ("BLOCK", ["tenant-allowlist"], 1.0), ex
    body = error_of(api_b.run(input="hello"), 403, "governance_block")
    assert api_b.trace(body["trace_id"])["matched_rules"] == ["tenant-allowlist"]
    with pytest.raises(GovernanceBlock):
        sync_client(g.base_url, b.api_key).run("hello")


def test_agent_allowlist_reload(gateway_factory):
    g = gateway_factory("reload-agents", _cfg("agents", "banana"))
    api = GovApi(g.base_url, new_tenant(g, "agents").api_key)
    v = api.stability()["policy_version"]
    assert api.explain("run", {"input": "hi", "agent_id": "plain"})["decision"] == "ALLOW"
    g.write_config(_cfg("agents", "banana", allow_agents=["summarizer"]))
    api.wait_new_version(v)
    ex = api.explain("run", {"input": "hi", "agent_id": "plain"})
    assert (ex["decision"], ex["matched_rules"], ex["risk_score"]) == ("BLOCK", ["agent-allowlist"], 1.0), ex
    assert api.explain("run", {"input": "hi", "agent_id": "summarizer"})["decision"] == "ALLOW"
    body = error_of(api.run(input="hi", agent_id="plain"), 403, "governance_block")
    assert api.trace(body["trace_id"])["matched_rules"] == ["agent-allowlist"]
