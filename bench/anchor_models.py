"""The latency-estimate anchor models: MobileNet v1 / v2 / v3 Large / v3 Small as .tflite.

The published anchor figures (XNNPACK README, Raspberry Pi table) were measured on these
architectures with random weights; `keras.applications.*(weights=None)` builds the same
graphs offline (weights do not change latency). Each model is converted with edgekiln's own
emitter (float32, and full-int8 with a few random calibration samples) and cached as a file,
so the fit script and the estimate test pay the 10-30 s conversions once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

ARCHITECTURES = {
    "mobilenet_v1": ("MobileNet", {}),
    "mobilenet_v2": ("MobileNetV2", {}),
    # The XNNPACK benchmark models have no preprocessing layers; Keras adds a Rescaling by default.
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": False}),
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False}),
}
CALIBRATION_SAMPLES = 4  # random weights: ranges are meaningless anyway, only the graph matters
SEED = 0


DTYPES = ("float32", "int8")


def tflite_bytes(name: str, dtype: str, cache_dir: Path) -> bytes:
    """The .tflite of anchor `name` in `dtype` ('float32' or 'int8'), from the cache or converted now (both
    dtypes at once: one Keras model and one SavedModel export serve the two conversions)."""
    from edgekiln.compiler.manifest import compiler_versions

    tf_version = compiler_versions()["tensorflow"]
    paths = {d: cache_dir / f"{name}-{d}-tf{tf_version}.tflite" for d in DTYPES}
    if not paths[dtype].is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        for converted, data in _convert(name).items():
            partial = paths[converted].with_suffix(".partial")
            partial.write_bytes(data)
            partial.rename(paths[converted])  # a killed run never leaves a truncated model behind
    return paths[dtype].read_bytes()


def _convert(name: str) -> dict[str, bytes]:
    from edgekiln.compiler.emit import tflite_convert
    from edgekiln.compiler.model_inputs import Dataset
    from edgekiln.compiler.recipe import Quantize
    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    class_name, options = ARCHITECTURES[name]
    keras.utils.set_random_seed(SEED)
    model = getattr(keras.applications, class_name)(weights=None, input_shape=(224, 224, 3), **options)
    with tempfile.TemporaryDirectory(prefix="edgekiln-anchor-") as work:
        model.export(work, verbose=False)
        samples = np.random.default_rng(SEED).uniform(-1, 1, (CALIBRATION_SAMPLES, 224, 224, 3))
        calib = Dataset({_input_name(work): samples.astype(np.float32)}, None, "random")
        return {"float32": tflite_convert.convert(Path(work), Quantize.none, None, int8_io=True),
                "int8": tflite_convert.convert(Path(work), Quantize.int8, calib, int8_io=True)}


def _input_name(saved_model_dir: str) -> str:
    """The serving signature's input name (Keras names it after the Input layer)."""
    from edgekiln.compiler.tf_env import import_tf

    tf = import_tf()
    signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    return next(iter(signature.structured_input_signature[1]))
