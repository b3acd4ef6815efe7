"""The GOVERNANCE suite's gateway config files: its topics, agents and
[governance.policy] tables, written as TOML (tomlgen)."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

from .tomlgen import Inline, dumps

DEFAULT_TOPIC = "gateway/run"
DEEP_TOPIC = "gateway/run-deep"
SUMMARIZE_TOPIC = "acme/summarize"
MODE_BUDGETS = {"fast": 0.25, "balanced": 0.5, "deep": 1.0}

# The shared gateway's input deny rules (ids are what traces report).
DENY_RULES: List[Dict[str, Any]] = [
    {"id": "no-credentials", "pattern": r"(?i)password\s*[:=]", "reason": "input carries credentials"},
    {"id": "no-drop-table", "pattern": r"(?i)drop\s+table", "reason": "destructive SQL", "risk": 0.6},
]

# Agents every config knows (agent_id not listed -> 404 unknown_agent).
AGENTS: List[Dict[str, Any]] = [
    {"id": "summarizer", "topic": SUMMARIZE_TOPIC},
    {"id": "plain"},                                    # no topic: the default topic (or the mode's)
    {"id": "denied-agent", "topic": "acme/denied"},    # on the shared policy's deny_agents
]


def policy(name: str = "e2e", **over: Any) -> Dict[str, Any]:
    """The [governance.policy] table: the spec's defaults, a 2 KiB input cap (below the
    gateway's 8 KiB body limit, so the policy rule is what answers), `over` applied."""
    p: Dict[str, Any] = {
        "name": name,
        "default_mode": "balanced",
        "mode_budgets": Inline(MODE_BUDGETS),
        "max_input_bytes": 2048,
        "allow_agents": [],
        "deny_agents": [],
        "allow_tenants": [],
        "deny_tenants": [],
        "tenant_runs_per_window": 0,
        "agent_runs_per_window": 0,
        "window_secs": 60,
        "block_factor": 2.0,
        "throttle_budget_factor": 0.5,
        "deny": copy.deepcopy(DENY_RULES),
    }
    p.update(over)
    return p


def gateway_config(pol: Optional[Dict[str, Any]] = None, agents: Optional[List[Dict[str, Any]]] = None,
                   **governance: Any) -> str:
    """A whole config file: per-key HTTP rate limit off, a [governance] section."""
    gov: Dict[str, Any] = {
        "default_topic": DEFAULT_TOPIC,
        "default_timeout_ms": 30000,
        "max_timeout_ms": 300000,
        "allow_priority": 100,
        "throttle_priority": 10,
        "mode_topics": Inline({"deep": DEEP_TOPIC}),
    }
    gov.update(governance)
    gov["agents"] = copy.deepcopy(AGENTS if agents is None else agents)
    gov["policy"] = pol if pol is not None else policy()
    if not gov["policy"].get("deny"):
        gov["policy"].pop("deny", None)  # an empty array of tables has no TOML form
    return dumps({"limits": {"rate_limit_per_minute": 0}, "governance": gov})


def shared_config(denied_tenant: str) -> str:
    """The session gateway: deny rules, the size cap, an agent and a tenant denylist;
    no budgets (every test may run as often as it likes)."""
    return gateway_config(policy("e2e-shared", deny_agents=["denied-agent"], deny_tenants=[denied_tenant]))
