"""`edgekiln explain` on an ONNX source: plain QDQ int8 beside float32, its nodes ranked by the error they add."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekiln.compiler.cli import app
from tests.unit.onnx_models import save, spread_conv_net

pytestmark = pytest.mark.integration


def _explain(tmp_path: Path, target: str) -> str:
    model = save(spread_conv_net(), tmp_path / "spread.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((48, 3, 8, 8), dtype=np.float32))
    args = ["explain", str(model), "--target", target, "--calib", str(tmp_path / "calib.npz"), "--runs", "10"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_explain_names_the_node_whose_output_range_one_channel_dominates_first(tmp_path: Path) -> None:
    output = _explain(tmp_path, "x86-64")
    causes = [c for c in output[output.index("likely causes"):].splitlines()[1:5] if " adds " in c]
    assert causes and causes[0].strip().split(". ", 1)[1].startswith("conv_spread (Conv) adds"), causes
    share = int(causes[0].split("adds ")[1].split("%")[0])
    assert share >= 40, causes
    assert "per-node int8 error" in output and "int8 vs float32 on this host" in output


def test_explain_for_an_arm_target_says_how_int8_was_timed_here(tmp_path: Path) -> None:
    assert "timed as its u8s8 twin" in _explain(tmp_path, "rpi4")


def test_explain_ladder_measures_what_each_rung_gains_over_plain_int8(tmp_path: Path) -> None:
    """--ladder builds ONNX int8+adaround, 16x8 and int8+mixed alone on explain's samples and judges each beside
    plain int8 on the held-back samples: the gain printed is the difference of the two measured SQNRs (the TFLite
    int8+fastpath rung is not converted: nothing to respell in this model)."""
    from edgekiln.compiler.commands.explain import explain
    from edgekiln.compiler.recipe import Quantize, Recipe

    model = save(spread_conv_net(), tmp_path / "spread.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((48, 3, 8, 8), dtype=np.float32))
    result = explain(Recipe(source=str(model), target="rpi4", calib=str(tmp_path / "calib.npz"), bench_runs=10,
                            quantize=Quantize.int8), ladder=True)
    rungs = {(r.format, r.variant): r for r in result.ladder}
    assert list(rungs) == [("tflite", "int8+fastpath"), ("onnx", "int8+adaround"), ("onnx", "16x8"),
                           ("onnx", "int8+mixed")]
    assert rungs["tflite", "int8+fastpath"].notes == ("not needed: no hard-swish or hard-sigmoid to respell",)
    sixteen = rungs["onnx", "16x8"]
    assert sixteen.quality is not None and sixteen.plain is not None and sixteen.bytes > 0
    assert sixteen.sqnr_gain_db == round(sixteen.quality.sqnr_db - sixteen.plain.sqnr_db, 2)
    assert sixteen.sqnr_gain_db > 0  # int16 activations keep the spread channel's small values
    mixed = rungs["onnx", "int8+mixed"]
    assert mixed.quality is not None or mixed.notes[0].startswith("not needed"), mixed.notes
