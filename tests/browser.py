"""Headless Chromium for checking the HTML pages dlgrade writes (feedback pages) as a person would see them.

Uses Debian's chromium and chromium-driver (.ci/run installs them) through Selenium, never Selenium Manager: the
driver and the browser are given by path, so nothing is downloaded. The flags keep Chromium off the network (it
only opens file:// pages here) and away from any profile but a fresh temporary one.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1400, 1000
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # no host name resolves: a page's remote script (nbgrader's MathJax) fails at once, with no DNS query sent
         "--host-resolver-rules=MAP * ~NOTFOUND")


@contextlib.contextmanager
def open_browser(width: int = WIDTH, height: int = HEIGHT) -> Iterator[webdriver.Chrome]:
    """A headless Chromium driven by chromedriver, with a fresh profile and the browser console log recorded."""
    with tempfile.TemporaryDirectory(prefix="dlgrade-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_window_size(width, height)
            yield driver
        finally:
            driver.quit()  # before the profile directory is removed


def load(driver: webdriver.Chrome, path: str | Path, timeout: float = 30) -> list[str]:
    """Open a local HTML file, wait until it has loaded, and return its console errors (level SEVERE, which is
    where Chromium reports uncaught exceptions and resources that failed to load). [] means a clean page."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(html_path: str | Path, png_path: str | Path, width: int = WIDTH) -> Path:
    """Render a local HTML page in headless Chromium and save the whole page (not just the window) as a PNG."""
    png_path = Path(png_path)
    with open_browser(width=width) as driver:
        load(driver, html_path)
        height = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
        # the window's outer size includes any browser frame: grow it so that the viewport holds the whole page
        frame = driver.execute_script("return window.outerHeight - window.innerHeight")
        driver.set_window_size(width, height + max(frame, 0))
        png_path.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(png_path)):
            raise RuntimeError(f"Chromium could not save a screenshot of {html_path}")
    return png_path
