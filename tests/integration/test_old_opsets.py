"""Whole builds of old or awkward ONNX models (issue 38): an opset-11 export gets an int8 bundle that validates on its
own runtime, and a model whose every int8 candidate really fails says so in the decision line, the manifest's
warnings and the report, float32 shipping. Real onnxruntime quantizer and runtime; no TensorFlow model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler import report, summary
from edgekiln.compiler.console import console
from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests.unit.old_opsets import images, nan_masked, paddle_like

pytestmark = pytest.mark.integration


def _recipe(tmp_path: Path, model: bytes, quantize: str) -> Recipe:
    (tmp_path / "m.onnx").write_bytes(model)
    np.savez(tmp_path / "calib.npz", x=images(40))
    return Recipe(source=str(tmp_path / "m.onnx"), target="rpi4", format="onnx", quantize=quantize,
                  calibration="minmax", calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "bundle"),
                  bench_runs=10)


def test_an_opset_11_export_builds_int8_that_validates_in_its_bundle(tmp_path: Path) -> None:
    result = build(_recipe(tmp_path, paddle_like(11).SerializeToString(), "int8"))
    q = result.manifest["quantization"]
    assert q["mode"] == "int8" and q["per_channel"]
    assert q["opset"]["source"] == 11 and q["opset"]["quantized"] == 13 and q["opset"]["weights"] == "per-channel"
    assert "no_int8" not in q and not any("int8 candidate" in w for w in result.manifest["warnings"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the bundle's runtime, not the repo's
    done = subprocess.run([sys.executable, "-m", "runtime", "validate", "--json"], cwd=result.output, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["passed"]


def test_no_int8_candidate_is_said_in_the_decision_line_the_warnings_and_the_report(tmp_path: Path, capsys,
                                                                                     monkeypatch) -> None:
    result = build(_recipe(tmp_path, nan_masked().SerializeToString(), "auto"))
    said = ("no int8 candidate could be built: onnxruntime int8 quantization failed: scale issue, so float32 ships; "
            "try --quantize dynamic, or --format tflite.")
    q = result.manifest["quantization"]
    assert q["variant"] == "float32" and q["no_int8"] == said
    assert result.manifest["warnings"][0] == said
    monkeypatch.setattr(console, "width", 400)
    summary.print_build_summary(result)
    assert f"decided by: {said}" in capsys.readouterr().out
    page = report.write(result.output).read_text()
    assert page.count(said) >= 2  # the headline and the warnings section
