"""--quantize auto for ONNX artifacts: float32, dynamic and the QDQ int8 family built, judged and timed side by side.

One build of the sample ONNX ResNet for the x86-64 target (uint8 activations, so the s8s8 alternative is
built too), and one forced --quantize int8 build with a given calibration method. Latency is measured but
never asserted: the tests check that the recorded table obeys the choice rule, that the diagnosis ranks
real nodes, and that the bundle validates with its own runtime.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests.choice_rule import assert_choice_obeys_rule

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"


@pytest.fixture(scope="module")
def auto(tmp_path_factory: pytest.TempPathFactory):
    recipe = Recipe(source=str(SAMPLES / "mnist_resnet_nchw.onnx"), target="x86-64", format="onnx",
                    calib=str(SAMPLES / "mnist_calib_nchw.npz"), eval=str(SAMPLES / "mnist_eval_nchw.npz"),
                    output=str(tmp_path_factory.mktemp("onnx_auto") / "b"), calib_samples=64,
                    holdout_samples=16, bench_runs=10)
    return build(recipe)


def _rows(manifest: dict) -> dict[str, dict]:
    return {row["name"]: row for row in manifest["quantization"]["candidates"]}


def test_the_table_holds_the_onnx_variants_and_a_reason(auto) -> None:
    q = auto.manifest["quantization"]
    rows = _rows(auto.manifest)
    assert {"float32", "dynamic", "int8", "int8+s8s8"} <= set(rows)
    assert set(rows) | set(q["not_built"]) == {"float32", "dynamic", "int8", "int8+adaround", "int8+calibration",
                                               "int8+s8s8", "int8+exclude", "16x8", "int8+mixed"}
    assert all(row["format"] == "onnx" and row["bytes"] > 0 for row in rows.values())
    assert rows["float32"]["sqnr_db"] is None  # the baseline is the source model itself
    assert rows["int8"]["bytes"] < 0.35 * rows["float32"]["bytes"]
    assert "int8 activations" in rows["int8+s8s8"]["notes"]
    assert q["requested"] == "auto" and q["variant"] in rows and q["reason"].startswith(q["variant"])
    assert q["converter"] == "none (ONNX source)"
    # the shipped row's activations, whichever row this host's timing made fastest: x86-64 takes uint8, the
    # s8s8 alternative int8, dynamic quantizes them at run time from float32, float32 records none
    shipped = {"float32": None, "dynamic": "float32", "int8+s8s8": "int8"}.get(q["variant"], "uint8")
    assert q.get("activation_type") == shipped, (q["variant"], q.get("activation_type"))


def test_the_calibration_method_is_chosen_by_measurement(auto) -> None:
    """int8+calibration is built with the most faithful of percentile / entropy, or not built when min/max is."""
    q = auto.manifest["quantization"]
    rows = _rows(auto.manifest)
    assert rows["int8"]["notes"][0] == "minmax calibration"  # plain int8 is the yardstick
    if "int8+calibration" in rows:
        method = rows["int8+calibration"]["notes"][0].removesuffix(" calibration")
        assert method in ("percentile", "entropy")
        assert f"{method} calibration" in rows["int8+s8s8"]["notes"]  # the refinements build on it
        # the trials are recorded with the calibrated row's details: in the manifest when it is the one shipped
        if q["variant"] == "int8+calibration":
            assert set(q["details"]["calibration_trials"]) == {"minmax", "percentile", "entropy"}
        else:
            assert "calibration_trials" not in q["details"], q["variant"]
    else:
        why = q["not_built"]["int8+calibration"]
        assert why.startswith("identical to int8: min/max is the most faithful; measured: minmax SQNR")
        assert "percentile SQNR" in why and "entropy SQNR" in why
        assert "minmax calibration" in rows["int8+s8s8"]["notes"]


def test_the_choice_obeys_its_rule(auto) -> None:
    """The rule's choice over the recorded table, whichever row this host's timing made fastest."""
    assert_choice_obeys_rule(auto.manifest)
    assert auto.manifest["accuracy"]["drop"] <= 1.0


def test_the_diagnosis_ranks_nodes_of_the_int8_model(auto) -> None:
    diagnosis = auto.manifest["quantization"]["diagnosis"]
    nodes = diagnosis["nodes"]
    assert diagnosis["of"].startswith("int8 (plain") and diagnosis["samples"] > 0 and len(nodes) >= 3
    shares = [n["share"] for n in nodes]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert all(n["op"] in ("Conv", "Add", "Gemm", "MaxPool", "Relu", "GlobalAveragePool", "Flatten") for n in nodes)
    assert all(n["sqnr_db"] is None or n["sqnr_db"] > 10 for n in nodes)  # the dequantized tensors are compared


def test_the_bundle_validates_with_its_own_runtime(auto) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "runtime", "validate", "--json"], cwd=auto.output, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["passed"]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the u8s8 twin is for x86 hosts")
def test_an_arm_target_times_its_s8s8_candidates_as_u8s8_twins_and_builds_no_s8s8_alternative(tmp_path: Path) -> None:
    """rpi4 (s8s8), no labels: the fidelity floor decides; s8s8 is timed by its u8s8 twin on this x86 host."""
    recipe = Recipe(source=str(SAMPLES / "mnist_resnet_nchw.onnx"), target="rpi4", format="onnx",
                    calib=str(SAMPLES / "mnist_calib_nchw.npz"), output=str(tmp_path / "b"), calib_samples=64,
                    holdout_samples=16, bench_runs=10)
    q = build(recipe).manifest["quantization"]
    rows = {row["name"]: row for row in q["candidates"]}
    assert "int8+s8s8" in q["not_built"] and "int8+s8s8" not in rows
    assert any("u8s8 twin" in note for note in rows["int8"]["notes"])
    assert "SQNR" in q["criterion"]  # no labels: the fidelity floor
    # whichever row shipped: an int8 one keeps the target's s8s8 (only timing used the twin)
    shipped = {"float32": None, "dynamic": "float32"}.get(q["variant"], "int8")
    assert q.get("activation_type") == shipped, (q["variant"], q.get("activation_type"))
    assert_choice_obeys_rule({"quantization": q})


def test_forced_int8_chooses_among_full_integer_candidates_with_the_given_method(tmp_path: Path) -> None:
    """--quantize int8 --calibration entropy: int8 family only, never float32, every node quantized."""
    import onnx

    recipe = Recipe(source=str(SAMPLES / "mnist_resnet_nchw.onnx"), target="x86-64", format="onnx", quantize="int8",
                    calibration="entropy", calib=str(SAMPLES / "mnist_calib_nchw.npz"), output=str(tmp_path / "b"),
                    calib_samples=64, holdout_samples=16, bench_runs=10)
    result = build(recipe)
    q = result.manifest["quantization"]
    rows = _rows(result.manifest)
    assert q["requested"] == "int8" and q["mode"] == "int8"
    assert set(rows) == {"float32", "int8", "int8+s8s8"} and rows["float32"]["verdict"] == "baseline (not eligible)"
    assert q["not_built"] == {"int8+calibration": "--calibration entropy was given"}
    assert q["variant"] in ("int8", "int8+s8s8") and "nodes_excluded" not in q
    assert all("entropy calibration" in rows[name]["notes"] for name in ("int8", "int8+s8s8"))
    assert q["calibration"] == q["calibration_method"] == "entropy"
    graph = onnx.load(str(result.output / "model.onnx")).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert compute and all(all(i in dequantized for i in n.input[:2]) for n in compute)  # int8 in, no float node
