"""The console's alerts panel in a real headless Chromium against a real `tokdyn serve`: a rule added over
the API is listed under its stream, and its firing (the tiny model answers "yes", so the rule fires on its
first evaluation through the real path: owner LLM replica -> controller -> GET /v1/alerts/events) appears as
it arrives; a deleted rule leaves the list. Leaves screenshots under out/console/."""

from __future__ import annotations

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from tests.frontends.console.conftest import API_KEY, STARTUP_S, screenshot
from tests.frontends.console.test_console import open_console, shown, until

pytestmark = [pytest.mark.ray, pytest.mark.browser]
STREAM = {"id": "dock", "url": "synthetic://?width=320&height=240&fps=10", "sample_rate_hz": 4,
          "frames_per_chunk": 2, "budget": 16}
PROMPT = "Is the loading dock door open?"


def text_at(driver, css: str) -> str | None:
    """The text of the element at `css`, or None when there is none. The panel re-renders its lists as
    status arrives, so an element found a moment ago may be gone: read its text in the same step."""
    try:
        return driver.find_element(By.CSS_SELECTOR, css).text
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def test_rules_are_listed_per_stream_and_firings_appear_as_they_arrive(serve, browser):
    with serve.http() as http:
        http.post("/v1/streams", json=STREAM).raise_for_status()
        try:
            # given the console open with no rules yet
            open_console(browser, serve, API_KEY)
            until(browser, lambda d: shown(d, "no-rules") and shown(d, "no-firings"), what="the empty alerts panel")
            # when a rule is added over the API, then it is listed under its stream
            added = http.post("/v1/alerts", json={"stream_id": "dock", "prompt": PROMPT, "cooldown_s": 86400})
            assert added.status_code == 201, added.text
            rule_id = added.json()["id"]
            row = f'li[data-stream-id="dock"] li[data-rule-id="{rule_id}"]'
            listed = until(browser, lambda d: text_at(d, row), what="the new rule listed under its stream")
            assert PROMPT in listed and not shown(browser, "no-rules")
            # and when it fires, the firing appears without a reload, and the rule's counts say so
            firing = until(browser, lambda d: text_at(d, f'#firing-list li[data-rule-id="{rule_id}"]'), STARTUP_S,
                           "the firing in the page")
            assert "dock" in firing and PROMPT in firing and "snapshot" in firing
            assert not shown(browser, "no-firings")
            until(browser, lambda d: "1 firings" in (text_at(d, row) or ""), what="counts")
            assert text_at(browser, f"{row} .state") == "firing"
            screenshot(browser, "alerts-firing")
            # when the rule is deleted, then it leaves the list; the firing stays in the history shown
            assert http.delete(f"/v1/alerts/{rule_id}").status_code == 200
            until(browser, lambda d: text_at(d, row) is None and shown(d, "no-rules"), what="the rule gone")
            assert text_at(browser, f'#firing-list li[data-rule-id="{rule_id}"]') is not None
        finally:
            http.delete("/v1/streams/dock")
