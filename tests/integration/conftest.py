"""Tiny real models in every source format, made once per test session (seeded)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.recipe import Recipe


def _tiny_model(keras, lambda_layer: bool = False):
    # Explicit layer names: Keras numbers unnamed layers by how many it made before in this process, which
    # depends on which tests ran first on this pytest-xdist worker.
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2d")(inp)
    x = keras.layers.BatchNormalization(momentum=0.9, name="batch_normalization")(x)
    x = keras.layers.ReLU(name="re_lu")(x)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="lambda")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2d_1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny CNN as .keras, .h5 and SavedModel, with calibration and labelled evaluation data."""
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(7)
    root = tmp_path_factory.mktemp("tiny")
    model = _tiny_model(keras)
    rng = np.random.default_rng(7)
    x = rng.random((60, 8, 8, 1), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0), axis=1)  # labels the model gets right: reference 100 %
    np.savez(root / "calib.npz", x=x[:40])
    np.savez(root / "eval.npz", x=x[40:], y=y[40:].astype(np.int64))
    model.save(root / "tiny.keras")
    model.save(root / "tiny.h5")
    model.export(str(root / "tiny_savedmodel"), verbose=False)
    _tiny_model(keras, lambda_layer=True).save(root / "lambda.keras")
    return {"keras": root / "tiny.keras", "h5": root / "tiny.h5", "saved_model": root / "tiny_savedmodel",
            "lambda": root / "lambda.keras", "calib": root / "calib.npz", "eval": root / "eval.npz",
            "root": root}


@pytest.fixture(scope="session")
def keras2_h5(tmp_path_factory) -> Path:
    """A .h5 written by Keras 2 (tf-keras), as older projects have them."""
    path = tmp_path_factory.mktemp("keras2") / "legacy.h5"
    code = textwrap.dedent(f"""
        import os
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tf_keras as keras
        keras.utils.set_random_seed(3)
        inp = keras.Input((8, 8, 1), name="image")
        x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
        x = keras.layers.Flatten()(x)
        out = keras.layers.Dense(4, activation="softmax")(x)
        model = keras.Model(inp, out)
        assert keras.__version__.startswith("2."), keras.__version__
        model.save({str(path)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


def tiny_recipe(tiny: dict[str, Path], out: Path, **changes) -> Recipe:
    """A quick int8 recipe over the tiny model (few timed runs: latency figures are not under test)."""
    options = {"source": str(tiny["keras"]), "target": "rpi4", "calib": str(tiny["calib"]),
               "eval": str(tiny["eval"]), "output": str(out), "bench_runs": 10, "holdout_samples": 8,
               "quantize": "int8"}
    options.update(changes)
    return Recipe(**options)


def run_runtime(bundle: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m runtime ARGS` from inside the bundle, as a user on the device would run it."""
    return subprocess.run([sys.executable, "-m", "runtime", *args], cwd=bundle, capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="session")
def encoder3(tmp_path_factory) -> dict:
    """A three-block Keras encoder (2 heads a block, 4 classes) with calibration and labelled evaluation ids."""
    from tests.integration.encoders import make_encoder

    return make_encoder(tmp_path_factory.mktemp("encoder3"), blocks=3, vocab=40, classes=4, seed=5, samples=160,
                        calib=100)


@pytest.fixture(scope="session")
def mlp_bundle(tmp_path_factory) -> dict[str, Path]:
    """The tiny ONNX classifier of the build-fault tests (tests/integration/faults.py) and one bundle of it,
    which each test copies as the 'old bundle' a faulty build must leave intact."""
    from edgekiln.compiler.pipeline import build
    from tests.integration.faults import write_mlp

    root = tmp_path_factory.mktemp("mlp")
    mlp = write_mlp(root)
    build(Recipe(source=str(mlp["model"]), target="rpi4", calib=str(mlp["calib"]), eval=str(mlp["eval"]),
                 output=str(root / "bundle"), quantize="none", format="onnx", bench_runs=5))
    return {**mlp, "bundle": root / "bundle"}
