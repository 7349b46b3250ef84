"""`edgekiln explain --ladder`: which rung between plain int8 and float would help this model, by how much, measured.

Each rung is built alone through the build's own builders (search/select.BUILDERS, a plan of `only` that rung), on
explain's samples (calibrated without the held-back fold), and judged on the held-back samples beside plain int8:
its fidelity gain (SQNR dB, cosine p5) over plain int8, its size, its target estimate (the cost model over its
ops and measured XNNPACK coverage) and its fast-path pieces. A rung the builder would not make says why (e.g.
int8+mixed where plain int8 already meets the criterion: nothing to promote). Nothing is guessed: a rung not
measured has no figure.

The rungs: Keras / SavedModel sources, TFLite int8+adaround and 16x8; ONNX sources, ONNX int8+adaround, 16x8 and
int8+mixed, and TFLite int8+fastpath (hard-swish respelled, ONNX -> TFLite) when the graph has something to respell.
There is no TFLite int8+mixed: LiteRT's QUANTIZE never requantizes int8 -> int16 (docs/rewrites.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler import Progress, analyze
from edgekiln.compiler.device import estimate
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.select import BUILDERS
from edgekiln.compiler.search.variants import plan
from edgekiln.targets import Target

RUNGS: dict[str, tuple[tuple[str, str], ...]] = {  # source framework -> (format, variant) in ladder order
    "keras": (("tflite", "int8+adaround"), ("tflite", "16x8")),
    "onnx": (("tflite", "int8+fastpath"), ("onnx", "int8+adaround"), ("onnx", "16x8"), ("onnx", "int8+mixed")),
}


@dataclass(frozen=True)
class Rung:
    """One rung measured against plain int8 of its format: its quality and plain int8's (None: not built), size,
    target estimate, XNNPACK pieces (TFLite) and what the builder said of it."""

    format: str
    variant: str
    quality: Quality | None
    plain: Quality | None
    bytes: int
    estimate_ms: float | None
    plain_estimate_ms: float | None
    pieces: int | None
    plain_pieces: int | None
    notes: tuple[str, ...]

    @property
    def sqnr_gain_db(self) -> float | None:
        if self.quality is None or self.plain is None or self.quality.sqnr_db is None or self.plain.sqnr_db is None:
            return None
        return round(self.quality.sqnr_db - self.plain.sqnr_db, 2)


def measure(ctx: BuildContext, target: Target, plain: Candidate | None,
            progress: Progress = lambda line: None) -> tuple[Rung, ...]:
    """Every rung of ctx.source's ladder, each built alone from ctx (its graph, samples, judge and criterion);
    plain: explain's plain int8 (in its format), the yardstick of a rung built without one (16x8)."""
    rungs = []
    for model_format, variant in RUNGS["onnx" if ctx.source == "onnx" else "keras"]:
        if variant == "int8+fastpath" and not _has_hard_activations(ctx):  # two conversions saved: said, not run
            rungs.append(Rung(model_format, variant, None, None, 0, None, None, None, None,
                              ("not needed: no hard-swish or hard-sigmoid to respell",)))
            continue
        progress(f"Building {model_format} {variant} (explain --ladder)")
        rungs.append(_rung(ctx, target, model_format, variant, plain))
    return tuple(rungs)


def _has_hard_activations(ctx: BuildContext) -> bool:
    from edgekiln.compiler.graph.onnx_fast_path import canonicalize

    return canonicalize(ctx.graph.model).changed


def _rung(ctx: BuildContext, target: Target, model_format: str, variant: str, given: Candidate | None) -> Rung:
    """Build `variant` alone (`only`: with plain int8 beside it where it refines plain int8; 16x8 without it, so
    that no gate skips it: explain's plain int8 is its yardstick) and judge both."""
    planned = plan(Quantize.auto, model_format, ctx.source, True, ctx.activation_type, only=variant)
    local = BuildContext(ctx.graph, ctx.source, planned, ctx.calib, ctx.judge, ctx.criterion,
                         ctx.workdir / f"{model_format}_{variant}", ctx.int8_io, "minmax", ctx.activation_type,
                         ctx.batch, progress=ctx.progress)
    local.workdir.mkdir(parents=True, exist_ok=True)
    try:
        built = {b.variant.name: b for b in BUILDERS[ctx.source, model_format](local).built}
    except Exception as exc:  # noqa: BLE001  (a rung that fails says so; the explanation goes on)
        from edgekiln.compiler.errors import first_line

        return Rung(model_format, variant, None, None, 0, None, None, None, None, (f"failed: {first_line(exc)}",))
    made, plain = built.get(variant), built.get("int8") or (given if given and given.format == model_format else None)
    judged = _judged(ctx, model_format, made)
    base = _judged(ctx, model_format, plain)
    return Rung(model_format, variant, judged, base, len(made.model or b"") if made else 0,
                _estimate(target, model_format, made), _estimate(target, model_format, plain),
                made.pieces if made and made.model else None, plain.pieces if plain and plain.model else None,
                made.notes if made else ("not planned",))


def _judged(ctx: BuildContext, model_format: str, candidate: Candidate | None) -> Quality | None:
    if candidate is None or candidate.model is None:
        return None
    return ctx.judge(model_format, candidate.model, candidate.layouts)


def _estimate(target: Target, model_format: str, candidate: Candidate | None) -> float | None:
    if candidate is None or candidate.model is None:
        return None
    stats = analyze.stats(model_format, candidate.model)
    return estimate.candidate_ms(target, model_format, stats.records, candidate.details.get("coverage"))


def lines(rungs: tuple[Rung, ...], target: str) -> list[str]:
    """One line per rung: would it help, by how much (measured), at what size and estimate."""
    out = []
    for r in rungs:
        name = f"{r.format} {r.variant}"
        if r.quality is None:
            out.append(f"{name}: not built ({'; '.join(r.notes) or 'no model'})")
            continue
        gain = r.sqnr_gain_db
        fidelity = f"SQNR {_db(r.quality.sqnr_db)} vs {_db(r.plain.sqnr_db if r.plain else None)} for plain int8" \
            + (f" ({gain:+.2f} dB)" if gain is not None else "")
        if r.quality.cosine_p5 is not None and r.plain is not None and r.plain.cosine_p5 is not None:
            fidelity += f", cosine p5 {r.quality.cosine_p5:.4f} vs {r.plain.cosine_p5:.4f}"
        speed = f"{target} est. {_ms(r.estimate_ms)} vs {_ms(r.plain_estimate_ms)}"
        pieces = f", XNNPACK pieces {r.plain_pieces} -> {r.pieces}" if r.format == "tflite" and r.pieces is not None \
            and r.plain_pieces is not None else ""
        out.append(f"{name}: {fidelity}; {speed}{pieces}; {r.bytes:,} B")
    return out


def _db(value: float | None) -> str:
    return "inf" if value is None else f"{value:.2f} dB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"
