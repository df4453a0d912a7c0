"""Shared fixtures.

Real data are read from ``../shared/data`` relative to the project root (never copied into
the repository). Where that folder is missing, the tests that need it skip with the reason;
where the environment variable ``CI`` is set, they fail instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLOBAL_LOC_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"{path} is missing (the shared data set lives beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_dir():
    return _require(DATA)


@pytest.fixture(scope="session")
def temple_dir():
    return _require(DATA / "temple_ring")


@pytest.fixture(scope="session")
def dino_dir():
    return _require(DATA / "dino_subset")


@pytest.fixture(scope="session")
def maupertuis_dir():
    return _require(DATA / "maupertuis_colmap")
