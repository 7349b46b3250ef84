"""The bundle runtime: checksum refusal, float API over int8 I/O, no TensorFlow, CLI verbs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgekiln import runtime
from edgekiln.compiler.pipeline import build
from tests.integration.conftest import run_runtime, tiny_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle(tiny, tmp_path_factory):
    return build(tiny_recipe(tiny, tmp_path_factory.mktemp("rt") / "b")).output


def test_a_changed_byte_is_refused(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "tampered")
    data = bytearray((copy / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(runtime.ChecksumError, match="refusing to load it"):
        runtime.load(copy)
    result = run_runtime(copy, "validate")
    assert result.returncode == 1 and result.stderr.startswith("error: model.tflite has sha256")


def test_tampered_golden_outputs_fail_validation(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "golden")
    with np.load(copy / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    golden["output_0"][3] += 0.5
    np.savez(copy / "golden.npz", **golden)
    result = run_runtime(copy, "validate")
    assert result.returncode == 1 and "sample 3: FAIL" in result.stdout and "FAIL: 7/8" in result.stdout


def test_predict_takes_and_returns_float_for_any_batch(bundle, tiny):
    model = runtime.load(bundle)
    with np.load(tiny["eval"]) as data:
        x = data["x"][:5]
    y = model.predict(x)
    assert y.dtype == np.float32 and y.shape == (5, 4)
    assert np.allclose(y.sum(axis=1), 1.0, atol=0.05)  # softmax survives int8 I/O
    assert np.array_equal(model.predict({"image": x})[2], y[2])
    raw = model.run_raw([np.zeros((1, 8, 8, 1), np.int8)])
    assert raw[0].dtype == np.int8


def test_runtime_works_without_tensorflow(bundle, tmp_path):
    # A `tensorflow` that cannot be imported: the runtime must not need it when LiteRT is there.
    blocker = tmp_path / "blocker" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('tensorflow is blocked in this test')\n")
    code = ("import sys, runtime, numpy as np; m = runtime.load('.'); r = m.validate(); "
            "assert r.passed; print(sorted(k for k in sys.modules if k.split('.')[0] in "
            "('tensorflow', 'keras', 'compiler', 'edgekiln')))")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    result = subprocess.run([sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bench_and_info_verbs(bundle):
    bench = run_runtime(bundle, "bench", "--runs", "20", "--json")
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert figures["runs"] == 20 and 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["peak_rss_mb"] > 0
    assert figures["threads"] == 4  # the target's default, from the manifest
    info = run_runtime(bundle, "info")
    assert info.returncode == 0 and "ai-edge-litert" in info.stdout and "int8" in info.stdout


def test_not_a_bundle_is_one_line(tmp_path):
    # Outside a bundle there is no `runtime/` folder: the installed one is edgekiln.runtime.
    result = subprocess.run([sys.executable, "-m", "edgekiln.runtime", "validate", "--bundle", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip().endswith("has no manifest.json")


def test_missing_golden_file_is_one_line(bundle, tmp_path):
    copy = shutil.copytree(bundle, tmp_path / "nogolden")
    (copy / "golden.npz").unlink()
    result = run_runtime(copy, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:") and "golden.npz" in result.stderr


def test_truncated_golden_is_one_line_naming_the_file(bundle, tmp_path, cli):
    copy = shutil.copytree(bundle, tmp_path / "cut")
    data = (copy / "golden.npz").read_bytes()
    (copy / "golden.npz").write_bytes(data[: len(data) // 2])
    result = run_runtime(copy, "validate")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {copy.resolve() / 'golden.npz'} is truncated or not an .npz file (BadZipFile): copy the bundle "
        "again from the build host, or rebuild it with `edgekiln build`"]
    checked = cli("validate", copy)  # the compiler's command runs the bundle's runtime: the same line
    assert checked.exit_code == 1 and "Traceback" not in checked.stdout + checked.stderr
    assert "golden.npz is truncated or not an .npz file" in checked.stderr


def test_inspect_a_bundle_with_an_incomplete_manifest(bundle, tmp_path, cli):
    copy = shutil.copytree(bundle, tmp_path / "partial")
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["latency"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = cli("inspect", copy)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {copy / 'manifest.json'} is not a complete edgekiln manifest (no latency) "
        "(rebuild the bundle with `edgekiln build`)"]
