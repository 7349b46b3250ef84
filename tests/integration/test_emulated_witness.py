"""`build --emulate-witness` on an ONNX model: onnxruntime's aarch64 wheel (MLAS) counted on an emulated Cortex-A72.

One tiny conv (8 -> 16 channels, 16x16), ONNX float32 and int8 only (`variant = "int8"`): four emulated runs.
Asserts what the counts are and where they go (each row, labelled; the summary beside the estimate; the report),
that they do not decide on rpi4 (its target file's cross-validated errors lose to the cost model's), and on the
classes the kernels execute, never on how many instructions.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgekiln.compiler.cli import app
from tests.integration.test_witness import require_witness

pytestmark = pytest.mark.integration

LABEL = "executed instructions on an emulated Cortex-A72; not a timing"


def conv16() -> onnx.ModelProto:
    """x [1, 8, 16, 16] -> Conv 8->16 (3x3, pad 1) -> Relu: 295 k MACs, enough for MLAS's GEMM kernels."""
    w = np.random.default_rng(0).normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    require_witness()
    root = tmp_path_factory.mktemp("emulated")
    (root / "conv.onnx").write_bytes(conv16().SerializeToString())
    np.savez(root / "calib.npz", x=np.random.default_rng(1).random((24, 8, 16, 16), dtype=np.float32))
    recipe = {"source": root / "conv.onnx", "target": "rpi4", "calib": root / "calib.npz", "output": root / "b",
              "format": "onnx", "quantize": "int8", "variant": "int8"}  # float32 and int8 only: 4 emulated runs
    (root / "recipe.toml").write_text("".join(f'{key} = "{value}"\n' for key, value in recipe.items())
                                      + "bench_runs = 10\n")
    runner = CliRunner()
    done = runner.invoke(app, ["build", "--recipe", str(root / "recipe.toml"), "--emulate-witness"],
                         env={"COLUMNS": "240"})
    assert done.exit_code == 0, done.output
    report = runner.invoke(app, ["report", str(root / "b")])
    assert report.exit_code == 0, report.output
    return {"manifest": json.loads((root / "b" / "manifest.json").read_text()), "printed": done.output,
            "report": (root / "b" / "report.html").read_text()}


def _rows(manifest: dict) -> dict[str, dict]:
    return {row["name"]: row for row in manifest["quantization"]["candidates"]}


def test_each_onnx_candidate_is_counted_in_onnxruntime_and_labelled_not_a_timing(built):
    rows = _rows(built["manifest"])
    assert set(rows) == {"float32", "int8"}
    for row in rows.values():
        counted = row["emulated"]
        assert counted["label"] == LABEL and counted["runtime"].startswith("onnxruntime ")
        assert counted["instructions"] == sum(counted["by_class"].values()) > 0
        assert counted["estimate_ms"] > 0
    # MLAS: the float conv runs FMLA-class instructions; the int8 (s8s8 on ARM) one integer multiply-accumulates
    assert rows["float32"]["emulated"]["by_class"]["float_simd"] > 0
    assert rows["float32"]["emulated"]["by_class"]["int_simd_mac"] == 0
    assert rows["int8"]["emulated"]["by_class"]["int_simd_mac"] > 0


def test_on_rpi4_the_counts_are_a_cross_check_and_the_cost_model_decides(built):
    q = built["manifest"]["quantization"]
    assert q["evidence"]["kind"] == "estimate"
    assert q["evidence"]["emulated"]["decides"] is False
    assert q["evidence"]["emulated"]["why"].startswith("a cross-check, not a decider")


def test_the_summary_prints_the_counts_beside_the_estimate_and_the_report_shows_them(built):
    printed = built["printed"]
    assert "rpi4 est. ms" in printed and "emul. Minstr" in printed and "emul. ms" in printed
    assert printed.index("rpi4 est. ms") < printed.index("emul. Minstr")
    assert LABEL in " ".join(printed.split())  # the legend may wrap
    assert "emulated M instructions" in built["report"] and LABEL in built["report"]
