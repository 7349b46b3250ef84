"""The CLI's fast paths: help without TensorFlow, usage errors exit 2, targets table."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_help_does_not_import_tensorflow():
    code = ("import sys; from typer.testing import CliRunner; from edgekiln.compiler.cli import app; "
            "r = CliRunner().invoke(app, ['build', '--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['prune-scan', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('tensorflow', 'keras', 'onnx', 'tf2onnx') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_usage_error_exits_2(cli):
    result = cli("build", "--quantize", "int3", "m.keras")
    assert result.exit_code == 2


def test_targets_table_lists_every_target(cli):
    result = cli("targets")
    assert result.exit_code == 0
    for name in ("rpi-zero-2w", "rpi3", "rpi4", "rpi5", "generic-aarch64", "x86-64"):
        assert name in result.stdout


def test_missing_model_is_one_line_exit_1(cli, tmp_path):
    result = cli("build", tmp_path / "nope.keras", "--calib", tmp_path / "c.npz", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: model {tmp_path / 'nope.keras'} does not exist"]
    assert not (tmp_path / "out").exists()
