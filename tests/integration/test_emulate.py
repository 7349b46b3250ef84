"""`edgekiln validate BUNDLE --emulate rpi4`: the bundle's own runtime on an emulated Raspberry Pi 4.

One int8 bundle of the small sample CNN, validated on this host and on the emulated board, and a
copy whose golden outputs were tampered with. The userland is built once into the user's cache
directory and reused by every later run (and session).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekiln.compiler.cli import app
from tests.system import require

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_models"


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def require_emulation() -> None:
    """Skip only where the platform makes emulation impossible; CI (EDGEKILN_REQUIRE_SYSTEM=1) never skips."""
    reason = None
    if platform.system() != "Linux" or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        reason = "emulation needs a Debian/Ubuntu host (apt-get, dpkg-deb)"
    elif not shutil.which("qemu-aarch64-static"):
        reason = "qemu-aarch64-static is missing: install Debian's qemu-user-static (make test does, as root)"
    require(reason)


@pytest.fixture(scope="module")
def build_output(tmp_path_factory) -> tuple[Path, str]:
    """An int8 bundle of the sample CNN for rpi4, and what `edgekiln build` printed."""
    out = tmp_path_factory.mktemp("emulate") / "cnn"
    result = invoke("build", SAMPLES / "mnist_cnn.keras", "--target", "rpi4", "--calib", SAMPLES / "mnist_calib.npz",
                    "-o", out, "--calib-samples", 64, "--runs", 20, "--quantize", "int8")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_build_prints_the_target_estimate_next_to_the_host_measurement(build_output):
    bundle, printed = build_output
    assert "host p50 latency" in printed and "rpi4 p50 ESTIMATE (4 threads" in printed
    manifest = json.loads((bundle / "manifest.json").read_text())
    estimate = manifest["latency"]["target_estimate"]
    assert estimate["method"] == "estimate" and estimate["low_ms"] <= estimate["p50_ms"] <= estimate["high_ms"]
    assert "held out" in estimate["basis"] and manifest["baseline"]["target_estimate"]["p50_ms"] > 0
    assert manifest["latency"]["host"]["measured_on"] == "host"


def test_bundle_passes_on_the_host(build_output):
    result = invoke("validate", build_output[0])
    assert result.exit_code == 0, result.output
    assert "PASS: 8/8 golden samples match on this host" in result.output


def test_bundle_passes_on_an_emulated_rpi4(build_output):
    require_emulation()
    bundle, _ = build_output
    requirements = (bundle / "requirements.txt").read_text().split()
    result = invoke("validate", bundle, "--emulate", "rpi4")
    assert result.exit_code == 0, result.output
    assert "qemu-aarch64-static -cpu cortex-a72, Debian bookworm arm64 userland" in result.output
    assert "PASS: 8/8 golden samples match on emulated rpi4" in result.output
    assert "ai-edge-litert 2.3.0" in result.output and "aarch64" in result.output
    installed = result.output.split("installed from requirements.txt:")[1].split("\nsample")[0]
    assert sorted(installed.replace("\n", " ").replace(",", " ").split()) == sorted(requirements)
    assert "ms" not in result.output.split("sample 0")[1]  # no emulated timing is reported


def test_tampered_golden_outputs_fail_with_exit_1(build_output, tmp_path):
    require_emulation()
    tampered = tmp_path / "tampered"
    shutil.copytree(build_output[0], tampered)
    with np.load(tampered / "golden.npz") as data:
        golden = {k: data[k].copy() for k in data.files}
    golden["output_0"][3] += 0.25  # sample 3 now "expects" other probabilities
    np.savez(tampered / "golden.npz", **golden)
    result = invoke("validate", tampered, "--emulate", "rpi4")
    assert result.exit_code == 1, result.output
    assert "sample 3: FAIL" in result.output and "sample 2: PASS" in result.output
    assert "error: FAIL on emulated rpi4: 1/8 golden samples differ beyond the tolerance" in result.output


def test_onnx_int8_bundle_passes_on_an_emulated_rpi4(tmp_path):
    require_emulation()
    out = tmp_path / "onnx"
    built = invoke("build", SAMPLES / "mnist_resnet_nchw.onnx", "--target", "rpi4", "--format", "onnx",
                   "--quantize", "int8", "--calib", SAMPLES / "mnist_calib_nchw.npz", "-o", out, "--runs", 10)
    assert built.exit_code == 0, built.output
    result = invoke("validate", out, "--emulate", "rpi4")
    assert result.exit_code == 0, result.output
    assert "PASS: 8/8 golden samples match on emulated rpi4" in result.output
    assert "onnxruntime 1.32.0" in result.output and "aarch64" in result.output
