"""How much slower LiteRT's built-in kernels run an op than XNNPACK's, on this host, one thread.

    python bench/slow_kernels.py

The estimate (compiler/device/estimate.py, SLOW_KERNEL_FACTOR) charges an op outside the XNNPACK
fast path this factor over the fast rate. No published Raspberry Pi figure gives it, so it is measured
here, on the build host, and carried to the target as an assumption the estimate's basis names.
Each op is timed alone on one tensor: int8 with the built-in kernels (the interpreter without its
default delegate) against the same op in float32 with XNNPACK (what the int8+fallback variant runs),
interleaved in rounds; printed as the ratio of the medians. The estimate applies the median ratio to the
op's float32-sized bytes (the XNNPACK float op's time is bytes / bandwidth).

The second table times the same way what a 16x8 model (int16 activations, int8 weights) runs: XNNPACK takes
none of its ops, so LiteRT runs every one on its built-in (reference) 16x8 kernels; a conv and a fully
connected layer are timed besides the elementwise ops, against XNNPACK float32 of the same op.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPE = (1, 32, 32, 64)
OPS = ("hard_swish", "prelu", "add")
OPS_16X8 = ("conv", "dense", "add")
ROUNDS, RUNS = 7, 200


def _model(kind: str, int8: bool, int16: bool = False) -> bytes:
    from edgekiln.compiler.tf_env import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    inp = keras.Input(SHAPE[1:])
    if kind == "hard_swish":
        out = keras.layers.Activation("hard_swish")(inp)
    elif kind == "prelu":
        out = keras.layers.PReLU(shared_axes=[1, 2])(inp)
    elif kind == "conv":
        out = keras.layers.Conv2D(64, 3, padding="same")(inp)
    elif kind == "dense":
        out = keras.layers.Dense(256)(keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inp)))
    else:
        out = keras.layers.Add()([inp, inp * 0.5])
    model = keras.Model(inp, out)
    with tempfile.TemporaryDirectory() as work:
        model.export(work, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(work)
        if int8 or int16:
            rng = np.random.default_rng(0)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([rng.uniform(-4, 4, SHAPE).astype(np.float32)]
                                                        for _ in range(8))
            ops = tf.lite.OpsSet
            converter.target_spec.supported_ops = [
                ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16 else ops.TFLITE_BUILTINS_INT8]
            io = tf.int16 if int16 else tf.int8
            converter.inference_input_type = converter.inference_output_type = io
        return converter.convert()


def _interpreter(model: bytes, builtin: bool):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin else OpResolverType.AUTO
    interp = Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=kind)
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interp


def _median_us(interp) -> float:
    start = time.perf_counter()
    for _ in range(RUNS):
        interp.invoke()
    return (time.perf_counter() - start) / RUNS * 1e6


def main() -> None:
    _int8_outside()
    _sixteen_by_eight()


def _sixteen_by_eight() -> None:
    """16x8 on LiteRT (every op on the built-in kernels: XNNPACK takes none) vs XNNPACK float32 and int8."""
    ratios = []
    for kind in OPS_16X8:
        models = {"16x8": _interpreter(_model(kind, int8=False, int16=True), builtin=False),
                  "XNNPACK int8": _interpreter(_model(kind, int8=True), builtin=False),
                  "XNNPACK float32": _interpreter(_model(kind, int8=False), builtin=False)}
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(ROUNDS):
            for name, interp in models.items():
                times[name].append(_median_us(interp))
        medians = {name: statistics.median(v) for name, v in times.items()}
        ratios.append(medians["16x8"] / medians["XNNPACK float32"])
        print(f"{kind:11s} " + "  ".join(f"{n} {m:8.1f} us" for n, m in medians.items())
              + f"   16x8 / XNNPACK float32 = {ratios[-1]:.1f}x", flush=True)
    print(f"median ratio over {len(OPS_16X8)} ops: {statistics.median(ratios):.1f}x")


def _int8_outside() -> None:
    ratios = []
    for kind in OPS:
        slow = _interpreter(_model(kind, int8=True), builtin=True)
        fast_int8 = _interpreter(_model(kind, int8=True), builtin=False)
        fast_float = _interpreter(_model(kind, int8=False), builtin=False)
        times: dict[str, list[float]] = {"builtin int8": [], "XNNPACK int8": [], "XNNPACK float32": []}
        for _ in range(ROUNDS):
            for name, interp in zip(times, (slow, fast_int8, fast_float), strict=True):
                times[name].append(_median_us(interp))
        medians = {name: statistics.median(v) for name, v in times.items()}
        # XNNPACK has no int8 HARD_SWISH / PRELU: their "XNNPACK int8" interpreter runs built-in kernels too.
        ratios.append(medians["builtin int8"] / medians["XNNPACK float32"])
        print(f"{kind:11s} " + "  ".join(f"{n} {m:8.1f} us" for n, m in medians.items())
              + f"   built-in int8 / XNNPACK float32 = {ratios[-1]:.1f}x", flush=True)
    print(f"median ratio over {len(OPS)} ops: {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
