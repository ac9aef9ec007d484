"""Headless Chromium for the tests that render a page (.ci/run installs it)."""

from __future__ import annotations

import shutil

import pytest

# No network, no profile sync, no first-run dialogs: the page must render from its own bytes.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    """The Chromium executable, or a skip saying how CI gets it."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return exe
