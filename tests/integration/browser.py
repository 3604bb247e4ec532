"""Debian's Chromium driven by Selenium through Debian's chromedriver (no browser
download: both come from apt, installed by scripts/bootstrap.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# no sandbox (tests run as root), no network beyond the page under test
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def chromium(profile: Path) -> webdriver.Chrome:
    """A headless Chromium with a fresh profile in ``profile``."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@contextmanager
def chromium_session(profile: Path) -> Iterator[webdriver.Chrome]:
    """:func:`chromium`, quit at the end."""
    driver = chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
