"""The console through outages, in a real headless Chromium: the pipeline answering 503 and the HTTP server
going away each raise a banner, and the page recovers on its own (no reload) when they come back. The API
runs in-process over real parts (tests/frontends/api/local_backend.py) so the outage is switched exactly."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from actors.config import ApiConfig
from actors.errors import PipelineUnavailable
from frontends.api.server import ApiServer
from tests.frontends.api.local_backend import LocalBackend
from tests.frontends.console.conftest import API_KEY, DESKTOP, screenshot, viewport
from tests.frontends.console.test_console import UI_S, shown, until
from vlm import ModelConfig, load_vlm

pytestmark = pytest.mark.browser
RECOVERY_S = UI_S + 10  # the page retries with backoff up to 8 s between tries


class FlakyBackend(LocalBackend):
    """LocalBackend whose stream listing fails as a restarting pipeline does while `down` is set."""

    down = False

    async def list_streams(self):
        if self.down:
            raise PipelineUnavailable("pipeline actor unavailable (ActorDiedError): retry shortly")
        return await super().list_streams()


def test_banner_on_503_and_on_a_lost_server_and_recovery_without_reload(browser):
    backend = FlakyBackend(load_vlm(ModelConfig()))
    config = ApiConfig(port=0, api_key=API_KEY)
    server = ApiServer(backend, config)
    url = server.url
    try:
        viewport(browser, DESKTOP)
        browser.get(url + "/")
        browser.execute_script("sessionStorage.setItem('tokdyn.apiKey', arguments[0]);", API_KEY)
        browser.get(url + "/")
        until(browser, lambda d: shown(d, "no-streams"), what="the stream list")
        browser.execute_script("window.loads = (window.loads || 0) + 1;")  # gone if the page reloads
        # when the pipeline answers 503, then the banner says it is unavailable
        backend.down = True
        until(browser, lambda d: shown(d, "banner") and "unavailable" in d.find_element(By.ID, "banner").text,
              what="the 503 banner")
        screenshot(browser, "outage-503")
        # and when it is back, the banner goes away by itself
        backend.down = False
        until(browser, lambda d: not shown(d, "banner"), RECOVERY_S, "recovery from the 503")
        # when the HTTP server goes away, then the page says it cannot reach it
        server.stop()
        until(browser, lambda d: shown(d, "banner") and "cannot be reached" in d.find_element(By.ID, "banner").text,
              what="the unreachable banner")
        screenshot(browser, "outage-unreachable")
        # and when a server listens on the same address again, the page recovers without a reload
        server = ApiServer(backend, ApiConfig(port=int(url.rsplit(":", 1)[1]), api_key=API_KEY))
        until(browser, lambda d: not shown(d, "banner") and shown(d, "no-streams"), RECOVERY_S,
              "recovery from the lost server")
        assert browser.execute_script("return window.loads") == 1
    finally:
        server.stop()
