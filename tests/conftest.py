"""Shared test helpers: paths and the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture
def cli():
    """Invoke the edgekiln CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from edgekiln.compiler.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


# Under `pytest -n 2 --dist loadgroup` (the Makefile's `make test`), a test file runs on one worker, so a
# module-scoped fixture is built once, not once per worker. The deploy tests share one group: their
# loopback "devices" share this user's home (~/edgekiln) and the wheel cache, and `--keep` counts deploys.
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = item.nodeid.split("::")[0]
        group = "deploy" if path.startswith("tests/integration/deploy/") else path
        item.add_marker(pytest.mark.xdist_group(group))
