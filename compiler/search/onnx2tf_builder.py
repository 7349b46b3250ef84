"""The TFLite candidates of an ONNX source: one onnx2tf run writes float32, float16, dynamic, int8 and 16x8.

onnx2tf converts once and writes every number format from that conversion (with -oiqt), so these
candidates cost one run. It calibrates with min/max and offers no hook for the Keras path's int8
refinements (rewrites, tuned ranges, float fallback): those candidates are not built, and the table
says why. Every model keeps the layout change onnx2tf made (NCHW -> NHWC), which the runtime undoes.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.emit import tflite_from_onnx as onnx2tf
from edgekiln.compiler.emit.tflite_requantize import int8_suffixes, requantize
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph import onnx_fast_path
from edgekiln.compiler.manifest_schema import CandidateDetails, FastPathFacts
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext, Builds
from edgekiln.compiler.search.plain_gate import plain_int8_misses
from edgekiln.compiler.search.tflite_builder import SIXTEEN_NOTES, with_coverage
from edgekiln.compiler.search.variants import Variant, is_16x8, sixteen_not_needed

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.graph.onnx_graph import OnnxGraph
    from edgekiln.compiler.model_inputs import Dataset


def build(ctx: BuildContext) -> Builds:
    """ONNX -> TFLite through onnx2tf: every planned candidate, in order; no diagnosis (the per-layer
    debugger needs the Keras path). The refinements onnx2tf cannot make are never planned
    (candidates.ONNX2TF_ONLY).

    A ConversionError (onnx2tf failed, or wrote ops LiteRT cannot run) propagates: the caller decides
    whether the format is dropped from the comparison or the build stops.
    """
    wanted = ctx.calib is not None and any(c.quantize is Quantize.int8 for c in ctx.candidates)
    integer = [s.name for s in ctx.graph.inputs if np.dtype(s.dtype).kind in "iu"]
    int8 = wanted and not integer  # onnx2tf's -cind calibration data is float32: token ids cannot be fed
    check_calibration(ctx.calibration, int8)
    mode = Quantize.int8 if int8 else Quantize.dynamic if any(
        c.quantize is Quantize.dynamic for c in ctx.candidates) else Quantize.none
    converted = _converted(ctx, mode)
    details: CandidateDetails = {"converter": f"onnx2tf {onnx2tf.version()}"}
    built = []
    for c in ctx.candidates:
        io = ctx.int8_io
        if c.fast_path:
            continue  # made after plain int8, whose pieces decide whether it is needed
        suffix = onnx2tf.SIXTEEN_ARTIFACT[io] if is_16x8(c) else onnx2tf.ARTIFACT.get((c.quantize, io))
        if c.quantize is Quantize.int8 and integer:
            built.append(Candidate(c, None, (f"onnx2tf calibrates int8 with float data only; the model takes integer "
                                         f"input(s) {', '.join(integer)} (use --format onnx for static int8)",)))
            continue
        if suffix is None or suffix not in converted.files:
            built.append(Candidate(c, None, (f"onnx2tf wrote no {suffix} model",)))
            continue
        extra: CandidateDetails = {"calibration": "minmax"} if c.quantize is Quantize.int8 else {}
        notes = ("min/max calibration (onnx2tf)",) if extra else ()
        if is_16x8(c):
            notes, extra = (*notes, *SIXTEEN_NOTES[1:]), {**extra, "activation_type": "int16", "weight_type": "int8"}
        built.append(with_coverage(Candidate(c, converted.model(suffix), notes, {**details, **extra},
                                         layouts=converted.layouts)))
    built = [*built, *(_fast_path(c, ctx, built) for c in ctx.candidates if c.fast_path)]
    order = [c.name for c in ctx.candidates]
    return Builds(tuple(_gated(b, built, ctx) for b in sorted(built, key=lambda b: order.index(b.name))))


def _converted(ctx: BuildContext, mode: Quantize, model: onnx.ModelProto | None = None) -> onnx2tf.Converted:
    """onnx2tf's conversion of the graph (or `model`, computing the same function), calibrated on ctx.calib.

    A cross-fitting fold's int8 files come from the build's SavedModel of the same graph, through the TFLite
    converter alone (emit/tflite_requantize.py: the bytes onnx2tf would write for those samples); onnx2tf
    converting the graph again per fold made cross-fitting cost 2.06-2.24x a plain build.
    """
    key = _conversion_key(ctx.graph, model)
    earlier = ctx.graph.tflite_conversions.get(key)
    if ctx.fold and mode is Quantize.int8 and isinstance(earlier, onnx2tf.Converted) and ctx.calib is not None:
        suffixes = int8_suffixes(ctx.int8_io, any(is_16x8(c) for c in ctx.candidates))
        return requantize(earlier, ctx.graph, ctx.calib, suffixes, ctx.workdir)
    converted = onnx2tf.convert(ctx.graph, ctx.calib, mode, ctx.workdir, model)  # calib: real samples probe layouts
    if not ctx.fold:
        ctx.graph.tflite_conversions[key] = converted
    return converted


def _conversion_key(graph: OnnxGraph, model: onnx.ModelProto | None) -> str:
    """What onnx2tf is given: the normalised model file as it stands (its path, size and time), or `model`."""
    if model is None:
        stat = graph.path.stat()
        return f"{graph.path}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(model.SerializeToString()).hexdigest()


FAST_PATH_TOLERANCE = 1e-4  # the respelled float graph's largest output difference, relative to the output's range


def _fast_path(c: Variant, ctx: BuildContext, built: list[Candidate]) -> Candidate:
    """int8+fastpath: plain int8 of the graph with its hard-swish / hard-sigmoid respelled (graph/onnx_fast_path.py),
    from a second onnx2tf run; built only where plain int8 runs in more than one XNNPACK piece, something was
    respelled, and the respelled float graph matches the source on the calibration samples."""
    plain = next((b for b in built if b.name == "int8" and b.model is not None), None)
    before = plain.pieces if plain is not None else None
    if plain is None or ctx.calib is None:
        return Candidate(c, None, ("not built: plain int8 was not built",))
    if before is not None and before <= 1:
        return Candidate(c, None, ("not needed: plain int8 runs in one XNNPACK piece",))
    canonical = onnx_fast_path.canonicalize(ctx.graph.model)
    if not canonical.changed:
        return Candidate(c, None, (f"not needed: no hard-swish or hard-sigmoid to respell (plain int8: {before} "
                                   "XNNPACK pieces)",))
    diff = _max_difference(ctx.graph, canonical.model, ctx.calib)
    if diff > FAST_PATH_TOLERANCE:
        return Candidate(c, None, (f"not built: the respelled graph's outputs differ from the source's by {diff:.2g} "
                                   "of their range on the calibration samples",))
    converted = _converted(ctx, Quantize.int8, canonical.model)
    suffix = onnx2tf.ARTIFACT[(Quantize.int8, ctx.int8_io)]
    made = with_coverage(Candidate(c, converted.model(suffix), (), {"converter": f"onnx2tf {onnx2tf.version()}",
                                                                    "calibration": "minmax"},
                                   layouts=converted.layouts))
    facts: FastPathFacts = {"rewritten": canonical.rewritten, "pieces_before": before, "pieces_after": made.pieces,
                            "max_relative_diff": diff, "samples": ctx.calib.size}
    spelled = ", ".join(f"{kind} x{n}" for kind, n in canonical.rewritten.items())
    note = f"respelled for XNNPACK int8 ({spelled}): {before} -> {made.pieces} piece(s)"
    return replace(made, notes=(note, *made.notes, "min/max calibration (onnx2tf)"),
                   details={**made.details, "fast_path": facts})


def _max_difference(graph: OnnxGraph, model: onnx.ModelProto, calib: Dataset) -> float:
    """The largest output difference of `model` from the source graph on the calibration samples, as a share of
    the source output's largest magnitude (the worst output); run in the graph's fixed batch, the last chunk
    padded by repeating its last sample (as OnnxGraph.run does)."""
    from edgekiln.compiler.graph.onnx_graph import open_session

    feeds = {s.name: calib.inputs[s.name] for s in graph.inputs}
    reference = graph.run(feeds)
    session = open_session(model.SerializeToString(), threads=1)
    step, worst = max(1, graph.batch), 0.0
    for start in range(0, calib.size, step):
        chunk = {k: v[start : start + step] for k, v in feeds.items()}
        real = next(iter(chunk.values())).shape[0]
        padded = {k: model_feed(np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)])) for k, v in chunk.items()}
        got = session.run(list(graph.output_names), padded)
        for ref, out in zip(reference, got, strict=True):
            scale = float(np.max(np.abs(ref))) or 1.0
            worst = max(worst, float(np.max(np.abs(ref[start : start + real] - out[:real]))) / scale)
    return worst


def _gated(built: Candidate, every: list[Candidate], ctx: BuildContext) -> Candidate:
    """A 16x8 candidate stays only where plain int8 misses the criterion (variants.sixteen_not_needed): onnx2tf
    wrote both in one run, but a 16x8 row that cannot be chosen would still be judged and timed."""
    plain = next((b for b in every if b.name == "int8" and b.model is not None), None)
    if not is_16x8(built.variant) or built.model is None or plain is None:
        return built
    gate = plain_int8_misses(ctx, plain, "tflite")
    why = sixteen_not_needed(gate.meets, gate.figures)
    return Candidate(built.variant, None, (why,)) if why else built


def check_calibration(calibration: str, int8: bool) -> None:
    """onnx2tf calibrates with min/max only: a method the user named is refused rather than ignored.

    (Keras -> TFLite sets percentile and entropy ranges itself: emit/calibrate.py.)
    """
    if int8 and calibration not in ("auto", "minmax"):
        raise RecipeError(f"calibration method {calibration} is not available for ONNX -> TFLite "
                          "(onnx2tf calibrates with min/max)", "use --calibration minmax, or --format onnx")
