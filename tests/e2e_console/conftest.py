"""Fixtures for the agent-gateway CONSOLE end-to-end suite.

One real `$AGW_BIN serve` (SQLite or PostgreSQL, per AGW_E2E_STORE) per
module, a real headless Chromium (Debian's `chromium` + `chromium-driver`,
through selenium) signed in to its console, and the real SDKs making the
jobs it shows. After every test the browser's log must hold no JavaScript
error, and every resource the page loaded must come from the gateway itself.
Waits are WebDriverWait / wait_until polls of the DOM or the protocol APIs,
never sleeps.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from agw_testkit import REPO
from agw_testkit.gateway import running_gateway
from agw_testkit.tenants import Tenant, new_tenant
from console_support.browser import Console, new_driver

pytest_plugins = ["agw_testkit.plugin"]

#: The gateway's config file: no tenant rate limit (the suite drives a fleet's
#: worth of SDK calls), governance runs on their default topic.
CONFIG = """
[limits]
rate_limit_per_minute = 0

[governance]
default_topic = "gateway/run"
default_timeout_ms = 30000

[governance.policy]
name = "console-e2e"
"""


def pytest_report_header(config):
    return [f"chromium={os.environ.get('AGW_CHROMIUM', 'chromium')}",
            f"chromedriver={os.environ.get('AGW_CHROMEDRIVER', 'chromedriver')}"]


@pytest.fixture(scope="session")
def shots_dir() -> Path | None:
    """Where page screenshots go on the SQLite run (None on PostgreSQL, so one
    store's images): tests/.work/console-shots (ignored by git), or
    AGW_CONSOLE_SHOTS=docs/console to refresh the images the README shows."""
    if os.environ.get("AGW_E2E_STORE", "sqlite") != "sqlite":
        return None
    d = Path(os.environ.get("AGW_CONSOLE_SHOTS", str(REPO / "tests" / ".work" / "console-shots")))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def driver():
    d = new_driver()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def gw():
    with running_gateway({"AGW_INTENT_BUS_CLAIM_TIMEOUT_SECS": "60"}, name="console",
                         config=CONFIG) as g:
        yield g


@pytest.fixture(scope="module")
def tenant(gw) -> Tenant:
    return new_tenant(gw, "acme")


@pytest.fixture(scope="module")
def other_tenant(gw) -> Tenant:
    return new_tenant(gw, "globex")


@pytest.fixture
def console(driver, gw, shots_dir) -> Iterator[Console]:
    """The browser on `gw`'s console; after the test: no JavaScript error in the
    browser log, no request to another origin."""
    c = Console(driver, gw.base_url, shots_dir)
    c.reset()
    yield c
    c.check_clean()


@pytest.fixture
def uniq() -> str:
    return uuid.uuid4().hex[:8]
