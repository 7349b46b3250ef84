"""How much slower LiteRT's built-in kernels run an op than XNNPACK's, on this host, one thread.

    python bench/slow_kernels.py

The estimate (compiler/device/estimate.py, SLOW_KERNEL_FACTOR) charges an op outside the XNNPACK
fast path this factor over the fast rate. No published Raspberry Pi figure gives it, so it is measured
here, on the build host, and carried to the target as an assumption the estimate's basis names.
Each op is timed alone on one tensor: int8 with the built-in kernels (the interpreter without its
default delegate) against the same op in float32 with XNNPACK (what the int8+fallback variant runs),
interleaved in rounds; printed as the ratio of the medians. The estimate applies the median ratio to the
op's float32-sized bytes (the XNNPACK float op's time is bytes / bandwidth).
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
ROUNDS, RUNS = 7, 200


def _model(kind: str, int8: bool) -> bytes:
    from edgekiln.compiler.tf_env import import_keras, import_tf

    keras, tf = import_keras(), import_tf()
    inp = keras.Input(SHAPE[1:])
    if kind == "hard_swish":
        out = keras.layers.Activation("hard_swish")(inp)
    elif kind == "prelu":
        out = keras.layers.PReLU(shared_axes=[1, 2])(inp)
    else:
        out = keras.layers.Add()([inp, inp * 0.5])
    model = keras.Model(inp, out)
    with tempfile.TemporaryDirectory() as work:
        model.export(work, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(work)
        if int8:
            rng = np.random.default_rng(0)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([rng.uniform(-4, 4, SHAPE).astype(np.float32)]
                                                        for _ in range(8))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
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
