"""Models shaped like real pretrained ones that did not build (issue 12): each builds, validates in its
bundle, and ships a model that meets the fidelity floor. The candidate table is recorded, never which row won.
The Keras models; the ONNX ones are in test_real_shapes_onnx.py (a file apiece: pytest-xdist --dist loadfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe
from tests import real_shapes

from .bundle_checks import FAST, meets_floor, strict, validates
from .conftest import run_runtime


def _table(manifest: dict) -> dict[str, dict]:
    return {row["name"]: row for row in manifest["quantization"]["candidates"]}


@pytest.fixture(scope="module")
def xception(tmp_path_factory) -> dict[str, Path]:
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    root = tmp_path_factory.mktemp("xception")
    x, _ = real_shapes.image_data(0, 96, 64, 64, 1, nchw=False)
    x = (x - 0.5) * 2.0  # the real model's preprocessing: [-1, 1]
    np.savez(root / "calib.npz", x=x)
    return {"model": real_shapes.mini_xception(keras, root / "emotion.h5", x), "calib": root / "calib.npz"}


def test_mini_xception_h5_with_a_dead_channel_builds(xception, tmp_path):
    """Before: equalisation's float32 product of the dead channel's ranges underflowed to 0, its scale became
    inf, and calibration raised `supplied range of [0.0, inf] is not finite` with no bundle."""
    recipe = Recipe(source=str(xception["model"]), calib=str(xception["calib"]), output=str(tmp_path / "b"),
                    format="tflite", **FAST)
    result = build(recipe)
    manifest = validates(result.output)
    meets_floor(manifest)
    assert manifest["source"]["params"] == pytest.approx(58_000, rel=0.05)
    rows, q = _table(manifest), manifest["quantization"]
    assert {"float32", "int8"} <= set(rows)
    # the rewritten candidate is built and measured: a row, or not shipped as a row because it measured less
    # faithful than int8, or came out identical to it (no rewrite applied and min/max the best calibration)
    assert "int8+rewrites" in rows or q["not_built"]["int8+rewrites"].startswith(
        ("dropped: less faithful than int8", "identical to int8"))
    assert q["failed"] == {}
    # the dead channel gives no infinite or undefined figure: every row's SQNR (float32's too: the TFLite
    # conversion of the Keras model) is measured and finite, and nothing in the manifest was replaced by null
    assert all(row["sqnr_db"] is not None and np.isfinite(row["sqnr_db"]) for row in rows.values()), rows
    assert "non_finite" not in manifest, manifest.get("non_finite")


def test_a_candidate_whose_ranges_overflow_drops_out_with_its_reason(tmp_path):
    """An activation that overflows float32 on the data (a real tanh saturates it back): int8 calibration
    gives it [x, inf]; the int8 candidates drop out with that reason and the float ones ship."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(1)
    inp = keras.Input((4,), name="x")
    big = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(1e25), name="big")(inp)
    huge = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(1e25), name="huge")(big)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.Activation("tanh")(huge))
    path = tmp_path / "overflow.keras"
    keras.Model(inp, out).save(path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(0.5, 1.0, (60, 4)).astype(np.float32))
    recipe = Recipe(source=str(path), calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "b"),
                    format="tflite", **FAST)
    manifest = validates(build(recipe).output)
    q = manifest["quantization"]
    assert not any(row["quantize"] == "int8" for row in q["candidates"])
    assert "int8" in q["failed"] and "non-finite range" in q["failed"]["int8"]
    assert "\n" not in q["failed"]["int8"]


def test_random_mobilenet_v2_writes_strict_json(tmp_path):
    """Random weights: every softmax output sits at 1/1000, several candidates reproduce it exactly (SQNR
    infinite) and keeping a node in float gains 'infinite' dB: every file still is strict JSON."""
    from edgekiln.compiler.tf_env import import_keras

    path = real_shapes.mobilenet_v2(import_keras(), tmp_path / "mnv2.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(-1, 1, (60, 32, 32, 3)).astype(np.float32))
    recipe = Recipe(source=str(path), calib=str(tmp_path / "calib.npz"), output=str(tmp_path / "b"),
                    format="onnx", calibration="minmax", **FAST)  # the method search is not what is under test
    manifest = validates(build(recipe).output)
    bench = run_runtime(tmp_path / "b", "bench", "--json", "--runs", "3")
    strict(bench.stdout)
    exact = [row for row in manifest["quantization"]["candidates"] if row["sqnr_db"] is None]
    assert exact  # float32 at least reproduces the source exactly: null, and the manifest says what null means
    assert "sqnr_db" in manifest["null_values"]
    # every figure written as null for not being finite is null where it sat, and says what it was
    replaced = manifest["non_finite"]
    assert replaced  # exact rows: an infinite SQNR each
    for where, meaning in replaced.items():
        assert _at(manifest, where) is None and meaning.split(": ")[0] in ("inf", "-inf", "nan"), (where, meaning)
    # the probes' gains are recorded with the variant that keeps nodes in float, whichever row this host's
    # timing shipped; an exact probe gains "inf"
    q = manifest["quantization"]
    if q["variant"] == "int8+exclude":
        gains = q["details"]["probe_gain_db"]
        assert gains and all(gain is not None or replaced[f"quantization.details.probe_gain_db.{node}"]
                             .startswith("inf: ") for node, gain in gains.items())
    else:
        assert "probe_gain_db" not in q["details"] and not any(".probe_gain_db." in where for where in replaced)


def _at(document: dict | list, where: str):
    """The value at a `non_finite` path (`a.b[2].c`; a key may itself hold dots)."""
    if not where:
        return document
    if where.startswith("["):
        index, rest = where[1:].split("]", 1)
        return _at(document[int(index)], rest.removeprefix("."))
    assert isinstance(document, dict), (document, where)
    key = max((k for k in document if where == k or where.startswith((f"{k}.", f"{k}["))), key=len)
    return _at(document[key], where[len(key):].removeprefix("."))
