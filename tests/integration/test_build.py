"""edgekiln build end to end with the real converter and interpreter, for every input and mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekiln import runtime
from edgekiln.compiler.pipeline import build
from tests.integration.conftest import run_runtime, tiny_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def int8_bundle(tiny, tmp_path_factory):
    return build(tiny_recipe(tiny, tmp_path_factory.mktemp("b") / "int8")).output


@pytest.mark.parametrize("source", ["keras", "h5", "saved_model"])
def test_every_source_format_builds_a_valid_int8_bundle(tiny, tmp_path, source):
    result = build(tiny_recipe(tiny, tmp_path / "bundle", source=str(tiny[source])))
    manifest = json.loads((result.output / "manifest.json").read_text())
    assert manifest["source"]["format"] == source
    assert manifest["model"]["inputs"][0]["dtype"] == "int8" and manifest["model"]["inputs"][0]["scale"] > 0
    assert manifest["quantization"]["mode"] == "int8" and manifest["quantization"]["per_channel"]
    assert manifest["accuracy"]["reference"] == 100.0
    check = run_runtime(result.output, "validate")
    assert check.returncode == 0 and "PASS: 8/8" in check.stdout, check.stdout + check.stderr


def test_keras2_h5_builds(tiny, keras2_h5, tmp_path):
    result = build(tiny_recipe(tiny, tmp_path / "bundle", source=str(keras2_h5)))
    assert result.manifest["source"]["params"] == 8 * 9 + 8 + 36 * 8 * 4 + 4
    assert run_runtime(result.output, "validate").returncode == 0


def test_manifest_has_the_contract_keys_and_honest_labels(int8_bundle):
    m = json.loads((int8_bundle / "manifest.json").read_text())
    for key in ("schema_version", "compiler", "created_utc", "recipe", "target", "source", "model", "baseline",
                "size", "pruning", "quantization", "accuracy", "fidelity", "latency", "golden"):
        assert key in m, key
    host = m["latency"]["host"]
    assert host["measured_on"] == "host" and host["runtime"] == "ai-edge-litert"
    # --runs 10 is the least: each of the 7 interleaved rounds runs for ~25 ms, as the candidate rows do
    assert host["runs"] >= 10 and host["how"]["where"] == "host" and host["how"]["rounds"] == 7
    assert host["how"]["runs"] == host["runs"] and "median" in host["how"]["statistic"]
    assert host["p50_ms"] <= host["p90_ms"] <= host["p99_ms"]
    assert m["latency"]["device"] == []
    assert m["size"]["ratio"] == pytest.approx(m["model"]["bytes"] / m["baseline"]["bytes"], abs=1e-4)
    assert m["baseline"]["latency"]["p50_ms"] > 0 and m["baseline"]["fidelity"]["top1_agreement"] == 1.0
    assert m["model"]["macs"] == m["source"]["macs"] == 8 * 8 * 8 * 9 + 4 * 4 * 16 * 72 + 16 * 4
    pins = (int8_bundle / "requirements.txt").read_text().split()
    assert {"numpy==2.4.6", "ai-edge-litert==2.3.0"} <= set(pins) and all("==" in pin for pin in pins)


def test_golden_vectors_are_real_eval_inputs_and_host_outputs(tiny, int8_bundle):
    with np.load(int8_bundle / "golden.npz") as golden, np.load(tiny["eval"]) as evaluation:
        assert np.array_equal(golden["input_0"], evaluation["x"][:8])
        model = runtime.load(int8_bundle)
        assert np.array_equal(model.predict(golden["input_0"]), golden["output_0"])


@pytest.mark.parametrize("mode,io_dtype", [("float16", "float32"), ("dynamic", "float32"), ("none", "float32")])
def test_other_quantize_modes(tiny, tmp_path, mode, io_dtype):
    result = build(tiny_recipe(tiny, tmp_path / mode, quantize=mode))
    m = result.manifest
    assert m["model"]["inputs"][0]["dtype"] == io_dtype
    assert (m["quantization"] or {"mode": "none"})["mode"] == mode
    assert m["fidelity"]["top1_agreement"] >= 0.9
    assert run_runtime(result.output, "validate").returncode == 0
    if mode == "none":  # the float32 model is the baseline itself
        assert m["model"]["sha256"] and m["size"]["ratio"] == 1.0
    else:  # float16 and dynamic int8 weights: smaller than the float32 baseline
        assert m["size"]["model_bytes"] < m["size"]["baseline_bytes"] and m["size"]["ratio"] < 1.0


def test_float_io_keeps_float_inputs_around_int8_compute(tiny, tmp_path):
    m = build(tiny_recipe(tiny, tmp_path / "fio", int8_io=False)).manifest
    assert m["model"]["inputs"][0]["dtype"] == "float32" and m["quantization"]["mode"] == "int8"
    assert m["model"]["ops"].get("QUANTIZE", 0) >= 1


def test_force_replaces_a_bundle(tiny, tmp_path):
    out = tmp_path / "again"
    build(tiny_recipe(tiny, out))
    first = json.loads((out / "manifest.json").read_text())["created_utc"]
    build(tiny_recipe(tiny, out, force=True, quantize="none"))
    assert json.loads((out / "manifest.json").read_text())["quantization"] is None
    assert first and sorted(p.name for p in tmp_path.iterdir()) == ["again"]
