"""A headless Chromium on the operator console, through selenium 4.35.0 and
Debian's chromedriver. `Console` signs in and out, opens pages, accepts the
confirmation of an action, waits on the DOM (WebDriverWait), takes
screenshots, and checks what the browser saw: JavaScript errors in its log,
requests to other origins (the Resource Timing entries of the page)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Set

import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 15.0


def new_driver() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("AGW_CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1440,900", "--disable-extensions", "--no-first-run",
              "--disable-background-networking", "--disable-component-update"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("AGW_CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(options=opts, service=service)
    d.set_page_load_timeout(30)
    return d


class Console:
    def __init__(self, driver: webdriver.Chrome, base_url: str, shots: Optional[Path]):
        self.d = driver
        self.base = base_url
        self.shots = shots
        #: HTTP statuses a test provoked on purpose (Chrome logs a failed
        #: document load as a SEVERE network entry).
        self.expected_statuses: Set[int] = set()
        self.pages: List[str] = []

    # -- navigation ----------------------------------------------------------
    def reset(self) -> None:
        """A blank page, no cookies, an empty log."""
        self.d.get("about:blank")
        # delete_all_cookies() clears the current page's domain only.
        self.d.execute_cdp_cmd("Network.clearBrowserCookies", {})
        self.d.get_log("browser")
        self.expected_statuses.clear()

    def open(self, path: str) -> None:
        self.d.get(self.base + path)
        self.pages.append(path)
        self._check_page_resources()

    def sign_in(self, key: str) -> None:
        self.reset()
        self.open("/console/")
        field = self.wait(By.ID, "key")
        field.clear()
        field.send_keys(key)
        self.d.find_element(By.ID, "sign-in").click()

    def signed_in(self, key: str, landing: str = "/console/topics") -> None:
        self.sign_in(key)
        WebDriverWait(self.d, WAIT_S).until(EC.url_contains(landing))
        self.wait(By.ID, "signed-in-as")

    def submit_action(self, form_action_suffix: str, within: str = "") -> None:
        """Clicks the button of the form whose action ends with the suffix (inside
        the element `within` selects, if given) and accepts the browser's confirmation."""
        form = self.wait(By.CSS_SELECTOR, f"{within} form[action$='{form_action_suffix}']".strip())
        form.find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(self.d, WAIT_S).until(EC.alert_is_present()).accept()

    # -- waits -----------------------------------------------------------------
    def wait(self, by: str, what: str, timeout: float = WAIT_S):
        return WebDriverWait(self.d, timeout).until(EC.presence_of_element_located((by, what)))

    def wait_text(self, by: str, what: str, text: str, timeout: float = WAIT_S) -> None:
        WebDriverWait(self.d, timeout).until(EC.text_to_be_present_in_element((by, what), text),
                                             message=f"{what!r} never showed {text!r}")

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = WAIT_S):
        def ok(_):
            try:
                return cond()
            except (NoSuchElementException, StaleElementReferenceException):
                return False
        return WebDriverWait(self.d, timeout).until(ok, message=f"timed out waiting for {what}")

    def text(self, by: str, what: str) -> str:
        """An element's text; read again when a live update replaced it meanwhile."""
        for _ in range(5):
            try:
                return self.d.find_element(by, what).text
            except StaleElementReferenceException:
                continue
        return self.d.find_element(by, what).text

    def source(self) -> str:
        return self.d.page_source

    # -- what the browser saw --------------------------------------------------
    def cookie(self) -> Optional[dict]:
        return self.d.get_cookie("agw_console")

    def session(self) -> requests.Session:
        """A requests session carrying the browser's console cookie."""
        s = requests.Session()
        c = self.cookie()
        if c:
            s.cookies.set(c["name"], c["value"], path="/console")
        return s

    def _check_page_resources(self) -> None:
        urls = self.d.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".concat([document.location.href]);") or []
        foreign = [u for u in urls if not (u.startswith(self.base + "/") or u == "about:blank")]
        assert not foreign, f"the page loaded resources from another origin: {foreign}"

    def browser_errors(self) -> List[str]:
        bad = []
        for e in self.d.get_log("browser"):
            msg = e.get("message", "")
            if e.get("level") != "SEVERE" and "Content Security Policy" not in msg:
                continue
            if e.get("source") == "network" and any(
                    f"status of {s}" in msg for s in self.expected_statuses):
                continue
            bad.append(f"{e.get('source')}: {msg}")
        return bad

    def check_clean(self) -> None:
        self._check_page_resources()
        errors = self.browser_errors()
        assert not errors, "the browser logged errors:\n" + "\n".join(errors)

    def shot(self, name: str, dark: bool = False) -> None:
        """Writes docs/console/<name>.png (SQLite run only)."""
        if self.shots is None:
            return
        if dark:
            self.d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        size = self.d.get_window_size()
        try:
            # The whole page, up to a sensible height.
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(size["width"], max(600, min(int(height) + 40, 1800)))
            self.d.save_screenshot(str(self.shots / f"{name}.png"))
        finally:
            self.d.set_window_size(size["width"], size["height"])
            if dark:
                self.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
