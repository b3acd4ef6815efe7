"""Just enough TOML output for the suite's gateway configs.

A document is a dict: scalar / list / inline-table values at its top, dicts for
tables, lists of dicts for arrays of tables (nested to any depth). The result
is parsed back with tomllib, so a config the suite writes is always valid TOML
(the gateway's own validation is what the invalid-config tests exercise).
"""

from __future__ import annotations

import json
import tomllib
from typing import Any, Dict, List


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string accepts JSON's escapes
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}: {v!r}")


def _is_table(v: Any) -> bool:
    return isinstance(v, dict) and not isinstance(v, Inline)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_table(x) for x in v)


class Inline(dict):
    """A dict written as an inline table (`{ deep = "..." }`) instead of a [section]."""


def _emit(path: List[str], table: Dict[str, Any], out: List[str], header: str = "") -> None:
    if header:
        out.append(header)
    for k, v in table.items():
        if not (_is_table(v) or _is_table_array(v)):
            out.append(f"{_key(k)} = {value(v)}")
    for k, v in table.items():
        sub = path + [_key(k)]
        if _is_table(v):
            out.append("")
            _emit(sub, v, out, f"[{'.'.join(sub)}]")
        elif _is_table_array(v):
            for item in v:
                out.append("")
                _emit(sub, item, out, f"[[{'.'.join(sub)}]]")


def dumps(doc: Dict[str, Any]) -> str:
    out: List[str] = []
    _emit([], doc, out)
    text = "\n".join(out).strip() + "\n"
    tomllib.loads(text)  # the suite never hands the gateway broken TOML by accident
    return text
