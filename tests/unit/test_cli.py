"""The CLI's fast paths: help without TensorFlow, usage errors exit 2, targets table."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_help_does_not_import_tensorflow():
    code = ("import sys; from typer.testing import CliRunner; from edgekiln.compiler.cli import app; "
            "r = CliRunner().invoke(app, ['build', '--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['prune-scan', '--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['sweep', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('tensorflow', 'keras', 'onnx', 'tf2onnx', 'ray') if m in sys.modules]; "
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


def _stopped(seen: dict, key: str):
    """An engine stand-in that records what the command handed it, then stops the command in one line."""
    from edgekiln.compiler.errors import EdgekilnError

    def engine(received, *_args):
        seen[key] = received
        raise EdgekilnError("stopped by the test")

    return engine


def test_build_and_sweep_hand_the_cosine_floor_to_the_engine(cli, tmp_path, monkeypatch):
    from edgekiln.compiler import pipeline
    from edgekiln.compiler.commands import sweep

    seen: dict = {}
    monkeypatch.setattr(pipeline, "build", _stopped(seen, "build"))
    monkeypatch.setattr(sweep, "run_sweep", _stopped(seen, "sweep"))
    floor = ["--min-cosine", "0.98", "--min-cosine-p5", "0.95"]
    built = cli("build", tmp_path / "m.keras", "--calib", tmp_path / "c.npz", *floor)
    swept = cli("sweep", tmp_path / "m.keras", "-o", tmp_path / "sweep", *floor)
    assert built.stderr.strip() == swept.stderr.strip() == "error: stopped by the test"
    assert (seen["build"].min_cosine, seen["build"].min_cosine_p5) == (0.98, 0.95)
    assert (seen["sweep"].base.min_cosine, seen["sweep"].base.min_cosine_p5) == (0.98, 0.95)
    cli("build", tmp_path / "m.keras", "--calib", tmp_path / "c.npz")
    assert (seen["build"].min_cosine, seen["build"].min_cosine_p5) == (None, None)  # not given: no floor


def test_sweep_hands_its_student_axis_to_the_engine(cli, tmp_path, monkeypatch):
    from edgekiln.compiler.commands import sweep

    seen: dict = {}
    monkeypatch.setattr(sweep, "run_sweep", _stopped(seen, "sweep"))
    args = ("sweep", tmp_path / "m.keras", "-o", tmp_path / "sweep", "--train", tmp_path / "t.npz")
    assert cli(*args, "--distill", "1,0.5,auto").stderr.strip() == "error: stopped by the test"
    assert seen["sweep"].students == [1.0, 0.5, "auto"] and seen["sweep"].base.distill is None  # points set it
    cli(*args)
    assert seen["sweep"].students == [1.0]  # left out: the model itself
    refused = cli("sweep", tmp_path / "m.keras", "-o", tmp_path / "sweep", "--distill", "0.5")
    assert refused.exit_code == 1 and "pass --train DATA" in refused.stderr


def test_embedding_reaches_build_and_sweep_with_the_default_floor(cli, tmp_path, monkeypatch):
    from edgekiln.compiler import pipeline
    from edgekiln.compiler.commands import sweep

    seen: dict = {}
    monkeypatch.setattr(pipeline, "build", _stopped(seen, "build"))
    monkeypatch.setattr(sweep, "run_sweep", _stopped(seen, "sweep"))
    cli("build", tmp_path / "m.onnx", "--calib", tmp_path / "c.npz", "--embedding")
    cli("sweep", tmp_path / "m.onnx", "-o", tmp_path / "sweep", "--embedding", "--min-cosine", "0.97")
    assert seen["build"].embedding and (seen["build"].min_cosine, seen["build"].min_cosine_p5) == (0.99, 0.95)
    assert seen["sweep"].base.embedding and (seen["sweep"].base.min_cosine, seen["sweep"].base.min_cosine_p5) == (
        0.97, None)  # a floor given is the floor: the default fills in only when none is
