"""Gateways, tenants and the policy configs of the GOVERNANCE suite.

The gateway machinery (start/stop, PostgreSQL databases, config file, CLI) is
the Intent Bus suite's `tests/e2e/support/gateway.py`; tenants (API key +
CLI-minted JWTs) and the task API are the neuron suite's helpers. Both are
imported as namespace packages (`e2e.support`, `e2e_neuron.neuron_support`),
as tests/e2e_neuron does, so this suite's own helpers keep a distinct name.
"""

from __future__ import annotations

import copy
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

TESTS_DIR = Path(__file__).resolve().parents[2]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from e2e.support.gateway import (  # noqa: E402
    Gateway,
    GatewayError,
    check_can_run,
    remove_work_dirs,
    report_kept_logs,
    running_gateway,
    store_kind,
)
from e2e_neuron.neuron_support.env import Tenant, mint_token, new_tenant  # noqa: E402
from e2e_neuron.neuron_support.tasks import TaskApi, describe, wait_until  # noqa: E402

from .tomlgen import Inline, dumps  # noqa: E402

__all__ = [
    "Gateway", "GatewayError", "check_can_run", "remove_work_dirs", "report_kept_logs",
    "running_gateway", "store_kind", "Tenant", "mint_token", "new_tenant", "TaskApi",
    "describe", "wait_until", "DEFAULT_TOPIC", "DEEP_TOPIC", "SUMMARIZE_TOPIC",
    "DENY_RULES", "policy", "gateway_config", "shared_config", "new_uniq",
]

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


def new_uniq() -> str:
    return uuid.uuid4().hex[:10]


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
