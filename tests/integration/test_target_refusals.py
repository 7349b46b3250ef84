"""A build for a target whose limits the bundle violates is refused with one clear line, or forced."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekiln import targets
from edgekiln.compiler.cli import app

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
# Where the memory check, not the search, is tested: float32 alone (the runtime's base already exceeds the
# budget below, so the model's own bytes do not decide).
ONE_CANDIDATE = ("--format", "tflite", "--quantize", "none")


def build(target: str, out: Path, *extra: object):
    args = ["build", SAMPLES / "mnist_cnn.keras", "--target", target, "--calib", SAMPLES / "mnist_calib.npz",
            "-o", out, "--calib-samples", 32, "--runs", 5, *extra]
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def target_file(tmp_path: Path, name: str, **changes: str) -> Path:
    """rpi4.toml with some top-level values replaced (as TOML source text)."""
    text = (targets._HERE / "rpi4.toml").read_text().replace('name = "rpi4"', f'name = "{name}"')
    for key, value in changes.items():
        start = text.index(f"\n{key} = ") + 1
        text = text[:start] + f"{key} = {value}" + text[text.index("\n", start):]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_too_little_ram_is_refused_and_nothing_is_written(tmp_path):
    tiny = target_file(tmp_path, "tiny-board", ram_mb="64", ram_budget_mb="30")
    result = build(str(tiny), tmp_path / "out", *ONE_CANDIDATE)
    assert result.exit_code == 1
    assert re.search(r"the bundle needs about \d+ MB \(model [\d.]+ MB, activations [\d.]+ MB, runtime \d+ MB "
                     r"with (ai-edge-litert|onnxruntime)==", result.output)
    assert "tiny-board has a budget of 30 MB" in result.output
    assert not (tmp_path / "out").exists()


def test_force_builds_anyway_and_records_the_overridden_check(tmp_path):
    tiny = target_file(tmp_path, "tiny-board", ram_mb="64", ram_budget_mb="30")
    result = build(str(tiny), tmp_path / "out", "--force", *ONE_CANDIDATE)
    assert result.exit_code == 0, result.output
    warnings = json.loads((tmp_path / "out" / "manifest.json").read_text())["warnings"]
    assert any(w.startswith("--force: built despite: the bundle needs about ") for w in warnings)


def test_auto_leaves_out_a_format_whose_runtime_does_not_fit_the_ram_budget(tmp_path):
    # 55 MB: LiteRT's process (46 MB base, targets/runtime_memory.toml) fits, onnxruntime's (64 MB) does not.
    board = target_file(tmp_path, "small-board", ram_mb="128", ram_budget_mb="55")
    result = build(str(board), tmp_path / "out", "--format", "auto", "--quantize", "dynamic")  # both formats, no search
    assert result.exit_code == 0, result.output
    quantization = json.loads((tmp_path / "out" / "manifest.json").read_text())["quantization"]
    refused = quantization["refused_by_target"]
    assert refused and all(name.startswith("onnx:") for name in refused)
    assert all("with onnxruntime==1.32.0) but small-board has a budget of 55 MB" in why for why in refused.values())
    assert quantization["variant"].startswith("tflite:")


def test_an_arch_without_interpreter_wheel_is_refused_before_any_work(tmp_path):
    pi32 = target_file(tmp_path, "pi32", arch='"armv7l"')
    result = build(str(pi32), tmp_path / "out")
    assert result.exit_code == 1
    assert "ai-edge-litert==2.3.0 has no wheel for armv7l / Python 3.11 / glibc 2.36 (target pi32)" in result.output
    assert "Converting" not in result.output  # refused before the conversion


def test_an_op_version_tflite_runtime_214_lacks_is_refused(tmp_path):
    # Dynamic-range quantization makes TF 2.21 emit FULLY_CONNECTED version 12; tflite-runtime 2.14,
    # the only interpreter for 32-bit Raspberry Pi OS, loads up to version 10 (targets/op_versions.toml).
    result = build("rpi3-armv7l", tmp_path / "out", "--quantize", "dynamic")
    assert result.exit_code == 1
    assert "tflite-runtime==2.14.0, the interpreter of rpi3-armv7l, cannot load this model: " \
           "FULLY_CONNECTED version 12 (it has up to 10)" in result.output
    assert "--quantize auto" in result.output


@pytest.fixture(scope="module")
def rpi3_bundle(tmp_path_factory) -> Path:
    """One --quantize auto build for the 32-bit Pi, read by the tests below."""
    out = tmp_path_factory.mktemp("rpi3") / "out"
    result = build("rpi3-armv7l", out)
    assert result.exit_code == 0, result.output
    return out


def test_auto_leaves_out_candidates_the_target_cannot_load(rpi3_bundle):
    quantization = json.loads((rpi3_bundle / "manifest.json").read_text())["quantization"]
    assert "FULLY_CONNECTED version 12" in quantization["refused_by_target"]["dynamic"]
    assert quantization["variant"] != "dynamic"


def test_the_32_bit_pi_gets_tflite_runtime_and_apt_numpy(rpi3_bundle):
    bundle = rpi3_bundle
    assert (bundle / "requirements.txt").read_text().splitlines() == [
        "numpy==1.24.2  # from apt: python3-numpy (PyPI has no armv7l wheel)", "tflite-runtime==2.14.0"]
    readme = (bundle / "README.md").read_text()
    assert "sudo apt install python3-numpy" in readme and "--system-site-packages" in readme
