"""`edgekiln profile MODEL --emulate rpi4`: one warm invoke's executed instructions on an emulated Cortex-A72.

A tiny conv model's float32 and int8 TFLite builds, each counted under Debian's qemu-aarch64 with edgekiln's
TCG plugin (built here on first use). Asserts on the classes and where they run (XNNPACK's microkernels),
never on how many: the counts are the emulated core's, and only their kind is the test's business.
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
from edgekiln.compiler.emulate.witness import witness
from edgekiln.runtime import __file__ as runtime_init
from tests.system import require

pytestmark = pytest.mark.integration


def require_witness() -> None:
    """Skip only where counting is impossible; CI (EDGEKILN_REQUIRE_SYSTEM=1) never skips."""
    reason = None
    if platform.system() != "Linux" or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        reason = "emulation needs a Debian/Ubuntu host (apt-get, dpkg-deb)"
    elif not shutil.which("qemu-aarch64"):
        reason = "qemu-aarch64 is missing: install Debian's qemu-user (make test does, as root)"
    elif not shutil.which("cc"):
        reason = "no C compiler (cc) to build the QEMU plugin: install Debian's gcc"
    require(reason)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A 3x3 conv (16x16x8 -> 16 channels, 295 k MACs), GAP, Dense: float32 and int8 .tflite files."""
    from edgekiln.compiler.emit.tflite_convert import convert
    from edgekiln.compiler.model_inputs import Dataset
    from edgekiln.compiler.recipe import Quantize
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 8), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv")(inp)
    out = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    root = tmp_path_factory.mktemp("witness")
    keras.Model(inp, out).export(str(root / "saved"), verbose=False)
    calib = Dataset({"image": np.random.default_rng(0).random((32, 16, 16, 8), dtype=np.float32)}, None, "calib")
    (root / "float32.tflite").write_bytes(convert(root / "saved", Quantize.none, None))
    (root / "int8.tflite").write_bytes(convert(root / "saved", Quantize.int8, calib, int8_io=False))
    return {"float32": root / "float32.tflite", "int8": root / "int8.tflite", "root": root}


@pytest.fixture(scope="module")
def counted(models) -> dict[str, dict]:
    """Both models counted through the CLI (--json); what it printed for the int8 one."""
    require_witness()
    found: dict[str, dict] = {}
    for name in ("float32", "int8"):
        out = models["root"] / f"{name}.json"
        result = CliRunner().invoke(app, ["profile", str(models[name]), "--emulate", "rpi4", "--json", str(out)],
                                    env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        found[name] = {**json.loads(out.read_text()), "printed": result.output}
    return found


def _xnnpack(counts: dict, kind: str) -> int:
    return sum(c[kind] for name, c in counts["by_symbol"].items() if ":xnn_" in name)


def test_int8_runs_integer_multiply_accumulates_in_xnnpack_and_float32_float_ones(counted):
    int8, float32 = counted["int8"], counted["float32"]
    assert _xnnpack(int8, "int_simd_mac") > 0 and int8["by_class"]["int_simd_mac"] > 0
    assert _xnnpack(float32, "float_simd") > 0 and float32["by_class"]["int_simd_mac"] == 0
    assert 0 < int8["total_instructions"] != float32["total_instructions"] > 0


def test_the_profile_is_labelled_as_counts_on_the_emulated_core(counted):
    int8 = counted["int8"]
    assert (int8["board"], int8["core"], int8["runtime"]) == ("rpi4", "cortex-a72", "ai-edge-litert 2.3.0")
    assert int8["label"] == "executed instructions on an emulated Cortex-A72; not a timing"
    assert set(int8["by_class"]) == {"int_simd_mac", "float_simd", "simd_other", "load_store", "branch", "other"}
    assert sum(int8["by_class"].values()) == int8["total_instructions"]
    assert "not a timing" in int8["printed"] and "xnn_qs8" in int8["printed"]


def test_two_counts_of_one_model_agree(models, counted):
    again = witness(models["int8"], "rpi4", Path(runtime_init).parent)
    assert again.counts.by_class == counted["int8"]["by_class"]
