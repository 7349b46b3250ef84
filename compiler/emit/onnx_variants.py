"""Every ONNX candidate of a build (candidates.CANDIDATES["onnx"]), and the diagnosis of plain int8.

  float32       the float model (tf2onnx output, or the ONNX source as loaded);
  dynamic       int8 weights, activations quantized on the fly;
  int8          static QDQ, the target's activation type (uint8 on x86, int8 on ARM), min/max unless asked;
  int8+s8s8     int8 activations where the target's are uint8: u8s8 can saturate on x86 without VNNI,
                s8s8 does not (and is slower). On an int8-activation target it is plain int8: not built;
  int8+exclude  plain int8 with the nodes whose float copy gains the most SQNR (measured one by one on
                the diagnosis's worst nodes and the output layer) kept in float (`nodes_to_exclude`), more
                of them (FALLBACK_STEPS) until the criterion holds.

On an x86 host, s8s8 kernels run slower than float (FACTS.md) while on ARM, where s8s8 is the target's
type, they are the fast path: the int8 candidates of an ARM target are timed as their u8s8 twins (same
graph and nodes, the host's fast int8 kernels), and a note says so. Fidelity is always the real model's.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import onnx_diagnose
from ..candidates import Built, Candidate, Quality
from ..choose import Criterion
from ..data import Dataset
from ..errors import ConversionError
from ..recipe import CalibrationMethod, Quantize
from . import EmitOptions
from . import onnx as onnx_emit

Judge = Callable[[str, bytes], Quality]
FALLBACK_STEPS = (1, 2, 4, 8)  # how many of the most helpful nodes to keep in float, tried in turn
PROBES = 6                     # nodes each kept in float alone to measure what it gains
X86 = ("x86_64", "amd64", "i686", "x86")
TWIN_NOTE = "timed as its u8s8 twin: this x86 host's s8s8 kernels are not the ARM target's"


def build(graph: Any, candidates: list[Candidate], calib: Dataset | None, judge: Judge, criterion: Criterion,
          workdir: Path, int8_io: bool, calibration: str = "auto", *, source: str = "onnx",
          activation_type: str = "uint8", batch: int = 1) -> tuple[list[Built], dict | None]:
    """One Built per candidate, in the given order, and the diagnosis of plain int8 (None without int8)."""
    if source == "onnx":
        float_bytes, details = graph.model.SerializeToString(), {"converter": "none (ONNX source)"}
    else:
        float_bytes = onnx_emit.keras_to_onnx(graph, batch)
        details = {"converter": f"tf2onnx {metadata.version('tf2onnx')} (opset {onnx_emit.OPSET})"}
    method = CalibrationMethod.minmax if calibration == "auto" else CalibrationMethod(calibration)
    options = EmitOptions(Quantize.none, int8_io, method, activation_type, workdir, batch)
    built: dict[str, Built] = {}
    for c in candidates:
        if c.quantize is not Quantize.int8:
            emitted = onnx_emit.quantized(float_bytes, None, _options(options, c, workdir), details)
            built[c.name] = Built(c, emitted.model, (), emitted.details)
    int8s = [c for c in candidates if c.quantize is Quantize.int8]
    diagnosis, missing = None, "needs calibration data (--calib)"
    if int8s and calib is not None:
        try:
            family, diagnosis = _int8_family(float_bytes, int8s, calib, judge, criterion, options, details)
            if activation_type == "int8" and platform.machine().lower() in X86:
                family = {name: _with_twin(b, float_bytes, calib, options) for name, b in family.items()}
            built.update(family)
        except ConversionError:
            if len(built) == 1:  # only the float32 baseline besides int8: int8 was required
                raise
            missing = "int8 quantization failed"
    return [built.get(c.name) or Built(c, None, (missing,)) for c in candidates], diagnosis


def _options(base: EmitOptions, candidate: Candidate, workdir: Path) -> EmitOptions:
    """Each candidate in its own scratch directory (the quantizer writes fixed file names)."""
    folder = workdir / f"onnx_{candidate.name.replace('+', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    return replace(base, quantize=candidate.quantize, workdir=folder,
                   activation_type=candidate.activation or base.activation_type)


def _int8_family(float_bytes: bytes, int8s: list[Candidate], calib: Dataset, judge: Judge, criterion: Criterion,
                 base: EmitOptions, details: dict) -> tuple[dict[str, Built], dict]:
    plain_c = next(c for c in int8s if c.name == "int8")
    plain_options = _options(base, plain_c, base.workdir)
    plain = onnx_emit.quantized(float_bytes, calib, plain_options, details)
    calibration = f"{base.calibration_method} calibration"
    built = {"int8": Built(plain_c, plain.model, (calibration,), dict(plain.details, calibration=str(
        base.calibration_method)))}
    feeds = _feeds(calib, base.batch)
    prepared = (plain_options.workdir / "onnx_prepared.onnx").read_bytes()
    errors, failure = [], ""
    try:
        errors = onnx_diagnose.node_errors(prepared, plain.model, feeds)
    except Exception as exc:  # noqa: BLE001  (a diagnosis must not stop a build; int8+exclude then has no ranking)
        failure = f"the per-node comparison failed: {(str(exc) or type(exc).__name__).splitlines()[0][:200]}"
    quality = judge("onnx", plain.model)
    accurate = _describe(quality) if criterion.meets(quality) else ""
    diagnosis = onnx_diagnose.report(errors, len(feeds) * base.batch, accurate, failure)
    for c in int8s:
        if c.activation and c.activation == base.activation_type:
            built[c.name] = Built(c, None, (f"{c.activation} activations are the target's: this is plain int8",))
        elif c.activation:
            options = _options(base, c, base.workdir)
            model = onnx_emit.quantized(float_bytes, calib, options, details)
            built[c.name] = Built(c, model.model, (f"{c.activation} activations", calibration),
                                  dict(model.details, calibration=str(base.calibration_method)))
        elif c.fallback == "layers":
            built[c.name] = _excluded(c, float_bytes, calib, errors, judge, criterion, _options(base, c, base.workdir),
                                      details, quality)
    return built, diagnosis


def _excluded(candidate: Candidate, float_bytes: bytes, calib: Dataset, errors: list[onnx_diagnose.NodeError],
              judge: Judge, criterion: Criterion, options: EmitOptions, details: dict, plain: Quality) -> Built:
    """Plain int8 with the nodes whose float copy helps most kept in float, more of them until the criterion
    holds and it is more faithful than plain int8; never more faithful: not built.

    Which nodes help is measured, not assumed: the diagnosis's worst nodes and the output layer are each
    kept in float alone (PROBES builds), and ranked by the SQNR they gain; the activation error a node
    shows is not always the error keeping it in float removes (its output stays quantized for others).
    """
    probes = [e.name for e in errors if e.output] + [e.name for e in errors if e.added > 0 and not e.output]
    float_path = options.workdir / "onnx_float.onnx"
    float_path.write_bytes(float_bytes)
    gains = {}
    for name in dict.fromkeys(probes[:PROBES]):
        gains[name] = _sqnr(judge("onnx", onnx_emit._static(float_path, calib, options, (name,)))) - _sqnr(plain)
    helpful = sorted((n for n, g in gains.items() if g > 0), key=lambda n: -gains[n])
    if not helpful:
        return Built(candidate, None, (f"keeping any of {len(gains)} probed node(s) in float was no more faithful "
                                       "than plain int8",))
    model, kept, quality = b"", [], plain
    for step in FALLBACK_STEPS:
        kept = helpful[:step]
        model = onnx_emit._static(float_path, calib, options, tuple(kept))
        quality = judge("onnx", model)
        if criterion.meets(quality) or step >= len(helpful):
            break
    shares = {e.name: e.share for e in errors}
    share = sum(shares.get(n, 0.0) for n in kept)
    note = f"{len(kept)} node(s) kept in float (+{_sqnr(quality) - _sqnr(plain):.1f} dB over plain int8)"
    return Built(candidate, model, (note,), dict(details, format="QDQ", weight_type="int8",
                                                 activation_type=options.activation_type, nodes_excluded=kept,
                                                 excluded_error_share=round(share, 4),
                                                 probe_gain_db={n: round(g, 2) for n, g in gains.items()}))


def _with_twin(built: Built, float_bytes: bytes, calib: Dataset, base: EmitOptions) -> Built:
    """The candidate with a u8s8 twin to time in its place (same excluded nodes)."""
    if built.model is None or built.details.get("activation_type") != "int8":
        return built
    options = replace(_options(base, built.candidate, base.workdir / "u8_twin"), activation_type="uint8",
                      quantize=Quantize.int8)
    float_path = options.workdir / "onnx_float.onnx"
    float_path.write_bytes(float_bytes)
    twin = onnx_emit._static(float_path, calib, options, tuple(built.details.get("nodes_excluded", ())))
    return replace(built, notes=(*built.notes, TWIN_NOTE), timed_as=twin)


def _feeds(calib: Dataset, batch: int) -> list[dict[str, np.ndarray]]:
    count = max(1, min(calib.size, onnx_diagnose.SAMPLES) // batch)
    return [{name: x[i * batch:(i + 1) * batch].astype(np.float32) for name, x in calib.inputs.items()}
            for i in range(count)]


def _sqnr(quality: Quality) -> float:
    return np.inf if quality.sqnr_db is None else quality.sqnr_db


def _describe(quality: Quality) -> str:
    if quality.accuracy_drop is not None:
        return f"accuracy drop {quality.accuracy_drop:.2f} points"
    sqnr = "inf" if quality.sqnr_db is None else f"{quality.sqnr_db:.1f} dB"
    return f"SQNR {sqnr}"
