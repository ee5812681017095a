"""Headless Chromium for the web view tests: the DOM after the page's scripts ran, and
screenshots.

CI installs it with ``apt-get install -y chromium`` (Debian). Virtual time runs the
page's timers at once (``--virtual-time-budget``), and stands still while a fetch is in
flight, so the page is dumped or shot after it loaded its data and refreshed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.image import imread

WINDOW = (1400, 900)
INSTALL = "apt-get update && apt-get install -y chromium"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError(f"the web view tests need Chromium: {INSTALL}")
    return found


def _run(url: str, action: list[str], budget_ms: int) -> str:
    with tempfile.TemporaryDirectory(prefix="streamdag-chromium-") as profile:
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",  # the page's console, to catch script errors
            "--v=0",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={budget_ms}",
            *action,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    uncaught = [line for line in console if "Uncaught" in line]
    if uncaught:
        raise AssertionError("the page's scripts failed:\n" + "\n".join(uncaught))
    return done.stdout


def dump_dom(url: str, budget_ms: int = 8_000) -> str:
    """The page's DOM, serialised, after ``budget_ms`` of virtual time."""
    return _run(url, ["--dump-dom"], budget_ms)


def screenshot(url: str, path: Path, budget_ms: int = 8_000) -> np.ndarray:
    """Save a PNG of the page at ``path`` and return its pixels (rows, columns, RGBA)."""
    _run(url, [f"--screenshot={path}"], budget_ms)
    pixels: np.ndarray = imread(path)
    return pixels


def share_of_colour(pixels: np.ndarray, hex_colour: str, tolerance: float = 3 / 255) -> float:
    """The share of pixels within ``tolerance`` of ``#rrggbb``."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    close = np.all(np.abs(pixels[..., :3] - rgb) <= tolerance, axis=-1)
    return float(close.mean())
