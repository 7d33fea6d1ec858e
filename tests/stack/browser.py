"""A real headless browser for the UI tests: Debian's chromium, driven through Debian's chromedriver.

Nothing downloads a browser or a driver: both come from Debian's packages, installed here
with apt-get like the stack installer installs Prometheus. Screenshots are written as small
palette PNGs to ``$OTEL_MCP_SCREENSHOT_DIR`` (default ``test-artifacts/screenshots``);
``make screenshots`` points it at ``docs/images``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from otel_mcp.stack.installer import InstallError, apt_install

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEBIAN_PACKAGES = ("chromium", "chromium-driver")
# Root needs --no-sandbox; the rest keep a test browser from calling home or updating itself.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--hide-scrollbars", "--window-size=1400,900")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_COLORS = 96  # a palette this size keeps UI screenshots readable at a fifth of the bytes


def ensure_chromium() -> None:
    """Install Debian's chromium and chromedriver when missing (as root), else fail clearly."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install {' '.join(DEBIAN_PACKAGES)}")
    try:
        apt_install(DEBIAN_PACKAGES, progress=True)
    except InstallError as exc:
        pytest.fail(f"cannot install {' '.join(DEBIAN_PACKAGES)}: {exc}")


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless chromium (its own profile in ``user_data_dir``), quit on exit."""
    ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("OTEL_MCP_SCREENSHOT_DIR") or REPO / "test-artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The visible page as ``<screenshot_dir>/<name>.png``, palette-reduced to stay small."""
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path = screenshot_dir() / f"{name}.png"
    image.quantize(colors=SCREENSHOT_COLORS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def poll(probe: Callable[[], T | None], timeout: float) -> T | None:
    """Call ``probe`` every half second until it returns something truthy or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
        except Exception:  # the SPA is still rendering: elements come and go
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def wait_until(driver: webdriver.Chrome, probe: Callable[[], T | None], timeout: float, what: str,
               shot: str, seen: object = None) -> T:
    """``poll`` that fails the test on timeout, saving the page as ``<shot>-failed.png`` and ``.html``
    and showing ``seen`` (what the probe last recorded)."""
    result = poll(probe, timeout)
    if not result:
        failed = save_screenshot(driver, f"{shot}-failed")
        failed.with_suffix(".html").write_text(str(driver.page_source))  # the DOM, to see why
        last = "" if seen is None else f"; last seen: {seen}"
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (screenshot {failed}{last})")
    return result
