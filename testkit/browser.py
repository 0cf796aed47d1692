"""Debian's Chromium, headless, driven by Playwright: never a downloaded browser.

The flags keep Chromium from calling home (the machine's network is closed and every refused
connection costs time)."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> str:
    """The browser's path; a clear failure (never a skip) where it is missing."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it)")
    return CHROMIUM


def launch(playwright):
    return playwright.chromium.launch(executable_path=require_chromium(), args=ARGS)
