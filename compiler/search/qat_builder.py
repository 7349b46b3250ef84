"""The int8+qat candidate: plain int8 of the model after quantization-aware fine-tuning (graph/keras_qat.py).

Built only where plain int8 misses the criterion on the tuning samples (the 16x8 rule, variants.sixteen_not_needed):
fine-tuning costs minutes and changes the weights, so it is the answer only to a plain int8 that is not accurate
enough. The fine-tuned model goes through the same calibrate-then-quantize steps as plain int8 (emit/tflite_int8),
with each activation tensor's range replaced by the one its fake-quantizer trained with (`trained_ranges`): the
shipped file is an ordinary int8 model whose ranges are the ones QAT trained for. Recalibrating by min / max instead
undid QAT on mnist_resnet_outliers.keras (4.25 points lost against plain int8's 4.00, docs/architecture.md).
"""

from __future__ import annotations

import re
import time

from edgekiln.compiler.emit import calibrate, tflite_int8
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.plain_gate import plain_int8_misses
from edgekiln.compiler.search.variants import Variant, failure_note, sixteen_not_needed

NOTES = ("quantization-aware fine-tuning on --train: BatchNormalization folded as the converter folds it, "
         "per-channel int8 weights and 8-bit activations fake-quantized", "activation step sizes as learned (LSQ)")


def candidate(variant: Variant, ctx: BuildContext, plain: Candidate | None) -> Candidate:
    """The int8+qat candidate, or not built: plain int8 meets the criterion, no --train, or training fails."""
    gate = plain_int8_misses(ctx, plain, "tflite")
    why = sixteen_not_needed(gate.meets, gate.figures)
    if why:
        return Candidate(variant, None, (why,))
    model = getattr(ctx.graph, "keras_model", None)
    if ctx.train is None or ctx.calib is None or model is None:
        return Candidate(variant, None, ("not built: --qat needs --train data and a Keras source model",))
    try:
        return _fine_tuned(variant, ctx, model)
    except Exception as exc:  # noqa: BLE001  (training or conversion that fails drops out with its reason)
        return Candidate(variant, None, (failure_note(exc),))


def _fine_tuned(variant: Variant, ctx: BuildContext, model: object) -> Candidate:
    from edgekiln.compiler.graph import keras_graph, keras_qat

    assert ctx.train is not None and ctx.calib is not None
    start = time.perf_counter()
    x = next(iter(ctx.train.inputs.values()))
    folded, bns = keras_qat.fold(model)
    trained = keras_qat.fake_quantized(folded, next(iter(ctx.calib.inputs.values())))
    initial = keras_qat.ranges(trained)  # from calibration; LSQ then learns each step
    facts = keras_qat.train(trained, model, x, ctx.train.labels)
    learned = keras_qat.ranges(trained)
    exported = keras_graph.from_model(folded, ctx.workdir / "qat_saved_model", ctx.graph.source_format,
                                      "the fine-tuned model")
    calibrated = tflite_int8.calibrate(exported.saved_model_dir, ctx.calib)
    ranges = trained_ranges(calibrated, learned)
    tflite = tflite_int8.quantize(calibrate.with_ranges(calibrated, ranges), ctx.int8_io)
    facts = {**facts, "folded_batch_norms": len(bns), "trained_ranges": len(ranges),
             "ranges": range_rows(initial, learned), "seconds": round(time.perf_counter() - start, 2)}
    return Candidate(variant, tflite, NOTES, {"calibration": "qat", "qat": facts})


def trained_ranges(calibrated: bytes, by_layer: dict[str, tuple[float, float]]) -> dict[int, tuple[float, float]]:
    """Calibrated tensor index -> the trained range of the Keras layer whose output it is. The converter names a
    tensor after the ops fused into it, the last first ('model/re_lu_4_1/Relu;model/batch_normalization_4_1/...'),
    each in its layer's scope (the layer name with a call suffix '_N'). Tensors of no layer (the model's input and
    output) keep their min / max, as every calibration method here keeps them."""
    found = {}
    for tensor in calibrate.ranged_tensors(calibrated):
        layer = layer_of(tensor.name)
        if layer in by_layer:
            found[tensor.index] = by_layer[layer]
    return found


def layer_of(tensor_name: str) -> str:
    """The Keras layer a converted tensor is the output of ('' for none), by the converter's naming (trained_ranges)."""
    scope = tensor_name.split(";")[0].split("/")
    return re.sub(r"_\d+$", "", scope[1]) if len(scope) >= 3 else ""


def range_rows(start: dict[str, tuple[float, float]],
               learned: dict[str, tuple[float, float]]) -> list[dict[str, object]]:
    """The manifest's record of each quantizer: its step (the int8 scale) and range from calibration, and the ones it
    learned, which the export gives the converter (the shipped tensor's scale is `step`)."""
    return [{"layer": name, "start_step": (start[name][1] - start[name][0]) / 255, "start": list(start[name]),
             "step": (high - low) / 255, "learned": [low, high]}
            for name, (low, high) in learned.items() if name in start]
