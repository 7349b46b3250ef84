"""Every ONNX candidate of a build (variants.VARIANTS["onnx"]), and the diagnosis of plain int8.

  float32       the float model (tf2onnx output, or the ONNX source as loaded);
  dynamic       int8 weights, activations quantized on the fly;
  int8          static QDQ, the target's activation type (uint8 on x86, int8 on ARM), min/max ranges unless
                --calibration names a method: what onnxruntime gives by default, and what is diagnosed;
  int8+calibration  plain int8 with the calibration method (min/max, percentile, entropy) most faithful on
                the held-back samples; when min/max wins it is plain int8: not built;
  int8+s8s8     int8 activations where the target's are uint8 (onnxruntime picks other x86 kernels for
                them, sometimes more faithful, usually slower). On an int8-activation target it is plain
                int8: not built;
  fused         float32 after onnxruntime's transformer optimizer (Attention, SkipLayerNormalization, BiasGelu,
                ... fusions; emit/onnx_fused.py), tf2onnx's LayerNorm and GELU canonicalised first so they match;
  fused+dynamic dynamic int8 of that graph (QAttention, MatMulInteger). Both only for encoders (no fused row at
                all for other models: no extra conversion) and only when a fusion fired (else not built: why);
  int8+exclude  int8 with the nodes whose float copy gains the most SQNR (measured one by one on
                the diagnosis's worst nodes and the output layer) kept in float (`nodes_to_exclude`), more
                of them (FALLBACK_STEPS) until the criterion holds;
  16x8          int16 activations, int8 weights (16-bit QDQ; the quantizer raises the opset to 21), plain int8's
                calibration; built only when plain int8 misses the criterion: onnxruntime fuses no 16-bit QDQ
                group into an integer kernel, so each op runs in float32 between its Q/DQ pairs (slower than float).
The refinements (s8s8, exclude) use the method int8+calibration chose, so they stack. All int8 candidates
quantize one pre-processed model with ranges computed once per method (emit/onnx_convert.py `static`, shared).
A model below opset 13 is quantized at opset 13 when onnx's converter raises it faithfully, else with per-tensor
weights (emit/onnx_opset.py); each int8 candidate's note and `opset` details say which.

On an x86 host, s8s8 kernels run slower than float (FACTS.md) while on ARM, where s8s8 is the target's
type, they are the fast path: the int8 candidates of an ARM target are timed as their u8s8 twins (same
graph and nodes, the host's fast int8 kernels), and a note says so. Fidelity is always the real model's.
On an x86 host without VNNI the runtime asks for onnxruntime's exact (slower) U8U8 kernels, so that
fidelity and golden outputs are what every CPU computes (runtime/backends.py); the rows say so.
"""

from __future__ import annotations

import platform
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import TypedDict

import numpy as np

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.diagnose import onnx_diagnosis as onnx_diagnose
from edgekiln.compiler.emit import EmitOptions, onnx_fused, onnx_guard, onnx_opset
from edgekiln.compiler.emit import onnx_convert as onnx_emit
from edgekiln.compiler.errors import first_line
from edgekiln.compiler.evaluate.criterion import Criterion, rank
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.quality import Quality, describe
from edgekiln.compiler.evaluate.timing import host_isa
from edgekiln.compiler.manifest_schema import CandidateDetails, Diagnosis
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from edgekiln.compiler.search import onnx_adaround_builder, onnx_mixed
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext, Builds
from edgekiln.compiler.search.plain_gate import plain_int8_misses, verdict
from edgekiln.compiler.search.variants import (
    Variant,
    as_conversion_error,
    failure_note,
    is_16x8,
    sixteen_not_needed,
)

FALLBACK_STEPS = (1, 2, 4, 8)  # how many of the most helpful nodes to keep in float, tried in turn
PROBES = 6                     # nodes each kept in float alone to measure what it gains
X86 = ("x86_64", "amd64", "i686", "x86")
METHODS = (CalibrationMethod.minmax, CalibrationMethod.percentile, CalibrationMethod.entropy)
TWIN_NOTE = "timed as its u8s8 twin: this x86 host's s8s8 kernels are not the ARM target's"
EXACT_NOTE = ("timed with onnxruntime's exact U8U8 kernels: this x86 host has no VNNI, where the fast U8S8 ones "
              "saturate; a VNNI x86 or an ARM CPU runs exact int8 faster")


def build(ctx: BuildContext) -> Builds:
    """Keras (through tf2onnx) or ONNX -> ONNX: every planned candidate, in order, and the diagnosis of plain
    int8 (None without int8).

    calibration "auto" tunes the method (int8+calibration) and plain int8 stays min/max; a method given by
    the user is used by every int8 candidate.
    """
    details: CandidateDetails
    if ctx.source == "onnx":
        float_bytes, details = ctx.graph.model.SerializeToString(), {"converter": "none (ONNX source)"}
    else:
        float_bytes = onnx_emit.keras_to_onnx(ctx.graph, ctx.batch)
        details = {"converter": f"tf2onnx {metadata.version('tf2onnx')} (opset {onnx_emit.OPSET})"}
    method = CalibrationMethod.minmax if ctx.calibration == "auto" else CalibrationMethod(ctx.calibration)
    options = EmitOptions(Quantize.none, ctx.int8_io, method, ctx.activation_type, ctx.workdir, ctx.batch)
    built: dict[str, Candidate] = {}
    candidates = _without_fused(ctx.candidates, float_bytes)
    for c in candidates:
        if c.quantize is not Quantize.int8 and not c.fused:
            model = onnx_emit.quantized(float_bytes, None, _options(options, c, ctx.workdir))
            built[c.name] = Candidate(c, model, (), {**details, **_float_details(c.quantize)})
    fusable = [c for c in candidates if c.fused]
    if fusable:
        built.update({c.name: c for c in _fused_family(fusable, float_bytes, options, details)})
    int8s = [c for c in ctx.candidates if c.quantize is Quantize.int8 and not is_16x8(c)]
    diagnosis, missing = None, ""
    shared: Path | None = None
    if int8s and ctx.calib is not None:
        try:
            opset = onnx_opset.for_per_channel(float_bytes, ctx.calib, ctx.batch)  # an old model: raised, or per tensor
            shared, int8_options = _shared(options, opset.model), replace(options, per_channel=opset.per_channel)
            family, diagnosis = _int8_family(int8s, ctx.calib, ctx.judge, ctx.criterion, int8_options, shared, details,
                                             tune=ctx.calibration == "auto")
            if ctx.activation_type == "int8" and platform.machine().lower() in X86 and not ctx.fold:
                family = {name: _with_twin(b, ctx.calib, int8_options, shared) for name, b in family.items()}
            if host_isa()["int8_dot_product"].startswith("none"):
                family = {name: _noted(b, EXACT_NOTE) for name, b in family.items()}
            family = {name: _with_kept_float(b, onnx_guard.recorded(shared)) for name, b in family.items()}
            family = {name: _with_opset(b, opset) for name, b in family.items()}
            built.update(family)
        except Exception as exc:  # noqa: BLE001  (int8 that fails, however it fails, drops out with its reason)
            if len(built) == 1:  # only the float32 baseline besides int8: int8 was required
                raise as_conversion_error(exc) from exc
            missing = failure_note(exc)
    for c in (c for c in candidates if is_16x8(c) and ctx.calib is not None):
        built[c.name] = _sixteen_by_eight(c, ctx, built.get("int8"), options, shared or _shared(options, float_bytes),
                                          details)
    return Builds(tuple(built.get(c.name) or Candidate(c, None, (missing,)) for c in candidates), diagnosis)


SIXTEEN_NOTE = ("int16 activations, int8 weights: onnxruntime fuses no 16-bit QDQ group into an integer kernel, each "
                "op runs in float32 between its QuantizeLinear / DequantizeLinear")


def _sixteen_by_eight(candidate: Variant, ctx: BuildContext, plain: Candidate | None, base: EmitOptions,
                      shared: Path, details: CandidateDetails) -> Candidate:
    """16-bit QDQ with plain int8's ranges (the shared calibration), or not built: where plain int8 meets the
    criterion on the tuning samples, or quantizing fails (its reason)."""
    gate = plain_int8_misses(ctx, plain, "onnx")
    why = sixteen_not_needed(gate.meets, gate.figures)
    if why:
        return Candidate(candidate, None, (why,))
    assert ctx.calib is not None, "16x8 is planned only with calibration data"
    options = _options(base, candidate, base.workdir)
    try:
        model = _qdq(options, ctx.calib, shared)
    except Exception as exc:  # noqa: BLE001  (a 16-bit quantization that fails drops out with its reason)
        return Candidate(candidate, None, (failure_note(exc),))
    built = Candidate(candidate, model, (f"{base.calibration_method} calibration", SIXTEEN_NOTE),
                      {**details, **_qdq_facts(options)})
    return _with_kept_float(built, onnx_guard.recorded(shared))


def _without_fused(candidates: tuple[Variant, ...], float_bytes: bytes) -> tuple[Variant, ...]:
    """The plan, less the fused candidates when the model is no transformer encoder (they get no row)."""
    if not any(c.fused for c in candidates):
        return candidates
    import onnx

    if onnx_fused.is_transformer(onnx.load_from_string(float_bytes)):
        return candidates
    return tuple(c for c in candidates if not c.fused)


def _fused_family(fusable: list[Variant], float_bytes: bytes, base: EmitOptions,
                  details: CandidateDetails) -> tuple[Candidate, ...]:
    """The fused candidates from one run of onnxruntime's transformer optimizer; not built (with the reason)
    when no fusion fired or the optimizer failed."""
    try:
        fused, facts = onnx_fused.fused(float_bytes, base.workdir / "onnx_optimizer")
    except Exception as exc:  # noqa: BLE001  (a failed optimizer drops the fused rows, not the build)
        return tuple(Candidate(c, None, (failure_note(exc),)) for c in fusable)
    if fused is None:
        rewritten = ", ".join(f"{op} x{n}" for op, n in facts["rewrites"].items()) or "none"
        why = f"no fusion of onnxruntime's transformer optimizer fired (canonicalised first: {rewritten})"
        return tuple(Candidate(c, None, (why,)) for c in fusable)
    note = "fused: " + ", ".join(f"{op} x{n}" for op, n in facts["fusions"].items())
    return tuple(_fused(c, fused, facts, note, base, details) for c in fusable)


def _fused(candidate: Variant, fused: bytes, facts: dict, note: str, base: EmitOptions,
           details: CandidateDetails) -> Candidate:
    """One candidate of the fused graph; not built (with the reason) when quantizing it fails."""
    try:
        model = onnx_emit.quantized(fused, None, _options(base, candidate, base.workdir))
        return Candidate(candidate, model, (note,), {**details, **_float_details(candidate.quantize), "fusion": facts,
                                                     "contrib_ops": onnx_fused.contrib_ops(model)})
    except Exception as exc:  # noqa: BLE001  (dynamic quantization of the fused graph can fail alone)
        return Candidate(candidate, None, (failure_note(exc),))


class StorageFacts(TypedDict, total=False):
    """How an ONNX candidate stores numbers, for the manifest's quantization details: QDQ int8 (`format`, its
    ranges' `calibration` method) or dynamic int8 (int8 weights, float32 activations); none for float."""

    format: str
    weight_type: str
    activation_type: str
    calibration: str


def _float_details(quantize: Quantize) -> StorageFacts:
    return {"weight_type": "int8", "activation_type": "float32"} if quantize is Quantize.dynamic else {}


def _options(base: EmitOptions, candidate: Variant, workdir: Path) -> EmitOptions:
    """Each candidate in its own scratch directory (the quantizer writes fixed file names)."""
    folder = workdir / f"onnx_{candidate.name.replace('+', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    return replace(base, quantize=candidate.quantize, workdir=folder,
                   activation_type=candidate.activation or base.activation_type)


def _shared(base: EmitOptions, float_bytes: bytes) -> Path:
    """The folder of what every int8 candidate shares: the float model, its pre-processed form and the
    ranges of each calibration method (computed on first use: one calibration pass per method)."""
    shared = base.workdir / "onnx_shared"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "onnx_float.onnx").write_bytes(float_bytes)
    return shared


def _qdq(options: EmitOptions, calib: Dataset, shared: Path, exclude: tuple[str, ...] = (),
         sixteen: tuple[str, ...] = ()) -> bytes:
    return onnx_emit.static(shared / "onnx_float.onnx", calib, options, exclude, shared, sixteen)


def _qdq_facts(options: EmitOptions) -> StorageFacts:
    return {"format": "QDQ", "weight_type": "int8", "activation_type": options.activation_type,
            "calibration": str(options.calibration_method)}


def _int8_family(int8s: list[Variant], calib: Dataset, judge: Judge, criterion: Criterion, base: EmitOptions,
                 shared: Path, details: CandidateDetails, tune: bool) -> tuple[dict[str, Candidate], Diagnosis]:
    """Plain int8 (diagnosed), the most faithful calibration, and the refinements built with that method."""
    plain_c = next(c for c in int8s if c.name == "int8")
    plain = _qdq(_options(base, plain_c, base.workdir), calib, shared)
    built = {"int8": Candidate(plain_c, plain, (f"{base.calibration_method} calibration",),
                               {**details, **_qdq_facts(base)})}
    feeds = _feeds(calib, base.batch)
    errors, failure = [], ""
    try:
        errors = onnx_diagnose.node_errors((shared / "onnx_prepared.onnx").read_bytes(), plain, feeds)
    except Exception as exc:  # noqa: BLE001  (a diagnosis must not stop a build; int8+exclude then has no ranking)
        failure = f"the per-node comparison failed: {first_line(exc, 200)}"
    gate = verdict(judge, criterion, "onnx", plain)
    quality = gate.quality
    assert quality is not None, "plain int8 was built just above"
    accurate = gate.figures if gate.meets else ""
    diagnosis = onnx_diagnose.report(errors, len(feeds) * base.batch, accurate, failure)
    family, reference = base, ("plain int8", quality)
    for c in (c for c in int8s if c.tune_calibration):
        try:
            built[c.name], family, reference = _calibrated(c, calib, judge, criterion, base, shared, details,
                                                           (plain, quality), tune)
        except Exception as exc:  # noqa: BLE001  (a refinement that fails drops out; plain int8 stands)
            built[c.name] = Candidate(c, None, (failure_note(exc),))
    calibration = f"{family.calibration_method} calibration"
    for c in int8s:
        try:
            if c.activation:  # (never the target's own type: variants.plan leaves that one out)
                options = _options(family, c, base.workdir)
                built[c.name] = Candidate(c, _qdq(options, calib, shared), (f"{c.activation} activations", calibration),
                                      {**details, **_qdq_facts(options)})
            elif c.fallback == "layers":
                built[c.name] = _excluded(c, calib, errors, judge, criterion, _options(family, c, base.workdir),
                                          shared, details, reference)
            elif c.mixed:
                built[c.name] = _mixed(c, calib, (*reference, plain), errors, judge, criterion,
                                       _options(family, c, base.workdir), shared, details)
            elif c.adaround:  # refines plain int8 (min/max): the only refinement planned, or plain int8 misses
                alone = len([v for v in int8s if v.name != "int8"]) == 1
                built[c.name] = onnx_adaround_builder.candidate(c, built["int8"], quality, calib, base.batch, shared,
                                                                judge, criterion, alone)
        except Exception as exc:  # noqa: BLE001
            built[c.name] = Candidate(c, None, (failure_note(exc),))
    return built, diagnosis


def _mixed(candidate: Variant, calib: Dataset, reference: tuple[str, Quality, bytes],
           errors: list[onnx_diagnose.NodeError], judge: Judge, criterion: Criterion, options: EmitOptions,
           shared: Path, details: CandidateDetails) -> Candidate:
    """int8+mixed (search/onnx_mixed.py) on the reference int8's method (plain int8's graph and diagnosis), from
    the prepared graph and its min/max ranges."""
    import onnx

    nodes = list(onnx.load(str(shared / "onnx_prepared.onnx")).graph.node)
    ranges = onnx_guard.minmax_ranges(shared / "onnx_minmax_ranges.json")
    return onnx_mixed.build(candidate, onnx_mixed.Plain(*reference, errors, nodes, ranges),
                            lambda sixteen: _qdq(options, calib, shared, (), sixteen),
                            lambda model: judge("onnx", model), criterion, {**details, **_qdq_facts(options)})


def _calibrated(candidate: Variant, calib: Dataset, judge: Judge, criterion: Criterion, base: EmitOptions,
                shared: Path, details: CandidateDetails, plain: tuple[bytes, Quality],
                tune: bool) -> tuple[Candidate, EmitOptions, tuple[str, Quality]]:
    """int8 with the most faithful of min/max, percentile and entropy ranges, ranked as TFLite ranks them.

    Returns the candidate, the options the refinements build on (its method) and the model they are
    compared with. Min/max is plain int8 itself (the same ranges), so only the other methods are built.
    """
    if not tune:
        why = f"--calibration {base.calibration_method} was given"
        return Candidate(candidate, None, (why,)), base, ("plain int8", plain[1])
    options = _options(base, candidate, base.workdir)
    tried = {CalibrationMethod.minmax: plain}
    for method in METHODS[1:]:
        model = _qdq(replace(options, calibration_method=method), calib, shared)
        tried[method] = (model, judge("onnx", model))
    best = max(tried, key=lambda m: rank(tried[m][1], criterion))  # ties: the earlier, simpler method
    trials = {str(m): q.to_dict() for m, (_, q) in tried.items()}
    if best is CalibrationMethod.minmax:
        measured = "measured: " + ", ".join(f"{m} {describe(q)}" for m, (_, q) in tried.items())
        return (Candidate(candidate, None, ("identical to int8: min/max is the most faithful", measured)), base,
                ("plain int8", plain[1]))
    options = replace(options, calibration_method=best)
    built = Candidate(candidate, tried[best][0], (f"{best} calibration",),
                  {**details, **_qdq_facts(options), "calibration_trials": trials})
    return built, replace(base, calibration_method=best), (candidate.name, tried[best][1])


def _excluded(candidate: Variant, calib: Dataset, errors: list[onnx_diagnose.NodeError], judge: Judge,
              criterion: Criterion, options: EmitOptions, shared: Path, details: CandidateDetails,
              reference: tuple[str, Quality]) -> Candidate:
    """The reference int8 model (plain int8, or int8+calibration when it won) with the nodes whose float
    copy helps most kept in float, more of them until the criterion holds and it is more faithful than the
    reference; never more faithful: not built.

    Which nodes help is measured, not assumed: the diagnosis's worst nodes and the output layer are each
    kept in float alone (PROBES builds), and ranked by the SQNR they gain; the activation error a node
    shows is not always the error keeping it in float removes (its output stays quantized for others).
    """
    name, plain = reference
    probes = [e.name for e in errors if e.output] + [e.name for e in errors if e.added > 0 and not e.output]
    gains = {}
    for node in dict.fromkeys(probes[:PROBES]):
        gains[node] = _sqnr(judge("onnx", _qdq(options, calib, shared, (node,)))) - _sqnr(plain)
    helpful = sorted((n for n, g in gains.items() if g > 0), key=lambda n: -gains[n])
    if not helpful:
        return Candidate(candidate, None, (f"keeping any of {len(gains)} probed node(s) in float was no more faithful "
                                       f"than {name}",))
    model, kept, quality = b"", [], plain
    for step in FALLBACK_STEPS:
        kept = helpful[:step]
        model = _qdq(options, calib, shared, tuple(kept))
        quality = judge("onnx", model)
        if criterion.meets(quality) or step >= len(helpful):
            break
    shares = {e.name: e.share for e in errors}
    share = sum(shares.get(n, 0.0) for n in kept)
    note = f"{len(kept)} node(s) kept in float (+{_sqnr(quality) - _sqnr(plain):.1f} dB over {name})"
    return Candidate(candidate, model, (note, f"{options.calibration_method} calibration"),
                     {**details, **_qdq_facts(options), "nodes_excluded": kept, "excluded_error_share": round(share, 4),
                      "probe_gain_db": {n: round(g, 2) for n, g in gains.items()}})


def _with_twin(built: Candidate, calib: Dataset, base: EmitOptions, shared: Path) -> Candidate:
    """The candidate with a u8s8 twin to time in its place (same method, same excluded nodes)."""
    if built.model is None or built.details.get("activation_type") != "int8":
        return built
    options = replace(_options(base, built.variant, base.workdir / "u8_twin"), activation_type="uint8",
                      quantize=Quantize.int8, calibration_method=CalibrationMethod(built.details["calibration"]))
    twin = _qdq(options, calib, shared, tuple(built.details.get("nodes_excluded", ())))
    return replace(built, notes=(*built.notes, TWIN_NOTE), timed_as=twin)


def _with_kept_float(built: Candidate, kept: list[dict]) -> Candidate:
    """The nodes every int8 candidate leaves in float because int8 cannot represent them (emit/onnx_guard.py)."""
    if built.model is None or not kept:
        return built
    note = f"{len(kept)} node(s) int8 cannot represent kept in float (mask fill values, wide Softmax inputs)"
    return replace(built, notes=(*built.notes, note), details={**built.details, "kept_in_float": kept})


def _with_opset(built: Candidate, opset: onnx_opset.OpsetPlan) -> Candidate:
    """The candidate with how its old opset was handled (raised, or weights per tensor), when it was old."""
    if built.model is None or opset.facts is None:
        return built
    return replace(built, notes=(*built.notes, opset.note), details={**built.details, "opset": opset.facts})


def _noted(built: Candidate, note: str) -> Candidate:
    return built if built.model is None else replace(built, notes=(*built.notes, note))


def _feeds(calib: Dataset, batch: int) -> list[dict[str, np.ndarray]]:
    count = max(1, min(calib.size, onnx_diagnose.SAMPLES) // batch)
    return [{name: model_feed(x[i * batch:(i + 1) * batch]) for name, x in calib.inputs.items()}
            for i in range(count)]


def _sqnr(quality: Quality) -> float:
    return np.inf if quality.sqnr_db is None else quality.sqnr_db


