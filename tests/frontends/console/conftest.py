"""Fixtures: a real `tokdyn serve` (own local Ray cluster, tiny model, an API key) on 127.0.0.1, and a real
headless Chromium driven through selenium and Debian's chromium-driver."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "out" / "console"  # screenshots a person can look at (gitignored)
API_KEY = "console-key-0123456789"
STARTUP_S = 240.0  # Ray + actor processes + imports + tiny model on a busy 2-core machine
DESKTOP = (1280, 800)
PHONE = (390, 844)


@dataclass
class Serve:
    url: str

    def http(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="package")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """`tokdyn serve` with no streams and an API key, in its own process; Ctrl-C at the end."""
    tmp = tmp_path_factory.mktemp("serve")
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    config.update(streams=[], checkpoint_dir=str(tmp / "ckpt"))
    # The random tiny model: its answers run to max_tokens, so the page's token-by-token streaming can be seen
    # (the shipped model's scene answers are one or two tokens).
    config["model"]["path"] = "tiny"
    config["ray"]["num_cpus"] = 2
    config["api"].update(port=0, api_key=API_KEY)
    (tmp / "serve.yaml").write_text(yaml.safe_dump(config))
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "frontends.cli", "serve", "-c", str(tmp / "serve.yaml")],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            banner = wait_for(lambda: proc.poll() is None and re.search(r"HTTP API on (\S+)\.", log_path.read_text())
                              or proc.poll() is not None, STARTUP_S, "the serve banner")
            assert proc.poll() is None, log_path.read_text()[-3000:]
            yield Serve(banner.group(1))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def _chromedriver() -> str:
    path = shutil.which("chromedriver")
    if path is None:
        pytest.skip("needs Debian's chromium + chromium-driver (make test installs them)")
    return path


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium, a fresh profile, nothing reaching beyond this machine; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver, size: tuple[int, int]) -> None:
    """Make the page's viewport exactly `size` CSS pixels (window sizes include the browser's own frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                                  "deviceScaleFactor": 1, "mobile": False})


def screenshot(driver, name: str) -> Path:
    """Save the current page under out/console/NAME.png (for a person to look at)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
