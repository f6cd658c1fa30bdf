"""Shared test fixtures: where ../shared/data is, and the skip-or-fail rule for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDDENOISE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str = "") -> Path:
    """Return ``../shared/data/<relative>``; skip when absent, but fail when CI=true."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"needs {path} (the project's shared real-CT data), which is absent"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " and CI=true")
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    """The root of ../shared/data (see require_shared)."""
    return require_shared()
