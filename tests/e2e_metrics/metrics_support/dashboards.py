"""The Grafana dashboards of deploy/grafana, as the suite checks them: every
panel target's PromQL with its template variables filled in the way Grafana
fills them for "All" ($job, $instance, $topic -> .*) and a time window for the
built-in interval variables."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

from agw_testkit import REPO

DASHBOARD_DIR = REPO / "deploy" / "grafana"

#: What each template variable stands for in the suite's queries. The rate
#: window is wide enough for a 1 s scrape interval and a workload that ended
#: a few seconds before the queries run.
VARIABLES: Dict[str, str] = {
    "job": ".*",
    "instance": ".*",
    "topic": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}

_VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def substitute(expr: str) -> str:
    def repl(m: "re.Match[str]") -> str:
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"unknown template variable ${name} in {expr!r}")
        return VARIABLES[name]

    return _VAR.sub(repl, expr)


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}/{self.panel}/{self.ref_id}"

    @property
    def query(self) -> str:
        return substitute(self.expr)


def files() -> List[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dash: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Every panel, including those inside collapsed rows; rows themselves left out."""
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def targets() -> List[Target]:
    out = []
    for path in files():
        dash = load(path)
        for p in panels(dash):
            for t in p.get("targets", []):
                out.append(Target(path.stem, p.get("title", "?"), t.get("refId", "?"), t.get("expr", "")))
    return out


def query_variables() -> List[Dict[str, Any]]:
    """(dashboard, variable) of every `label_values(...)` query variable."""
    out = []
    for path in files():
        for v in load(path).get("templating", {}).get("list", []):
            if v.get("type") == "query":
                out.append({"dashboard": path.stem, **v})
    return out


_LABEL_VALUES = re.compile(r"^\s*label_values\((.+),\s*(\w+)\s*\)\s*$")


def label_values_query(definition: str):
    """label_values(SELECTOR, LABEL) -> (SELECTOR, LABEL), variables filled in."""
    m = _LABEL_VALUES.match(definition)
    if not m:
        raise AssertionError(f"not a label_values(selector, label) query: {definition!r}")
    return substitute(m.group(1)), m.group(2)
