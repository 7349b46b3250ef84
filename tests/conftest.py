"""Shared test helpers: paths and the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session")
def cli():
    """Invoke the edgekiln CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from edgekiln.compiler.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])



@pytest.fixture(scope="session")
def shared_bundle(tmp_path_factory):
    """shared_bundle(source=..., **options): the bundle of that build, made once per test run and read by every
    test asking for the same model, data and options, on any xdist worker (tests/shared_builds.py)."""
    from tests.shared_builds import session_folder, shared_build

    folder = session_folder(tmp_path_factory)
    return lambda **options: shared_build(folder, **options)
