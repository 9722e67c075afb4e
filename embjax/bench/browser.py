"""Headless Chromium (Debian's chromium + chromedriver) for the page's load time; the browser tests use it too."""

from __future__ import annotations

import os
import shutil


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) on the PATH (Debian's `chromium` and `chromium-driver`), or None."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(console_log: bool = False):
    """A Selenium driver for headless Chromium at 1300×1000 (console_log: keep the page's console messages)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = chromium_paths()
    if found is None:
        raise RuntimeError("no chromium/chromedriver on the PATH; allowed: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
        opts.add_argument(arg)
    if console_log:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(found[1]), options=opts)


def browser_load_ms(page: str, rounds: int) -> list[tuple[float, float]]:
    """(load event, first frame drawn) in ms from navigation, each in a fresh headless Chromium."""
    from selenium.webdriver.support.ui import WebDriverWait

    out = []
    for _ in range(rounds):
        driver = headless_chromium()
        try:
            driver.get(f"file://{os.path.abspath(page)}")
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return window.embjaxViewer && window.embjaxViewer.ready")
            )
            out.append(
                tuple(
                    driver.execute_script(
                        "return [performance.getEntriesByType('navigation')[0].loadEventStart, "
                        "window.embjaxViewer.ready]"
                    )
                )
            )
        finally:
            driver.quit()
    return out
