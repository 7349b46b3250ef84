"""The variants a build considers, as data, and which of them a build plans (pure logic, no TensorFlow).

VARIANTS lists, per artifact format, every variant its builder can make; `plan` picks the ones a
--quantize mode asks for and says why each other one is not built. A format's builder (search/select.py
BUILDERS) returns one Candidate (search/candidate.py) per planned variant; another format adds a row here
and a builder there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekiln.compiler.errors import ConversionError, EdgekilnError
from edgekiln.compiler.recipe import Quantize


@dataclass(frozen=True)
class Variant:
    """One variant: artifact format, number format, and the int8 refinements it uses.

    rewrites: exact rewrites (BN folding, equalisation) and bias correction on the Keras model first.
    tune_calibration: min/max, percentile or entropy ranges, whichever is most faithful on held-back data.
    fallback: "ops" keeps in float the int8 ops outside the fast path; "layers" also the worst layers,
        more of them until the criterion holds.
    activation: the activation type when it is not the target's int8 type ("" = the target's): "int16" for
        16x8 (int16 activations, int8 weights; both formats), or ONNX's "int8" where the target's is uint8.
    fused: built from onnxruntime's transformer optimizer's graph (ONNX encoders only: emit/onnx_fused.py).
    qat: plain int8 of the model after quantization-aware fine-tuning (--qat --train; Keras sources only:
        graph/keras_qat.py), built only where plain int8 misses the criterion.
    mixed: per-layer mixed precision: int8, with the outputs of Concat nodes joining very different ranges in int16 and
        the layers that gain most promoted to int16 activations until the criterion holds (search/onnx_mixed.py).
    adaround: the integer weights learned up or down (AdaRound, emit/adaround.py) instead of rounded to nearest:
        same scales, zero points and graph as the candidate it refines.
    fast_path: plain int8 of the ONNX graph with hard-swish / hard-sigmoid respelled in ops XNNPACK runs in int8
        (graph/onnx_fast_path.py; ONNX -> TFLite only), built only where plain int8 runs in more than one piece.
    """

    name: str
    format: str
    quantize: Quantize
    rewrites: bool = False
    tune_calibration: bool = False
    fallback: str = ""
    activation: str = ""
    fused: bool = False
    qat: bool = False
    mixed: bool = False
    adaround: bool = False
    fast_path: bool = False


VARIANTS: dict[str, tuple[Variant, ...]] = {
    "tflite": (
        Variant("float32", "tflite", Quantize.none),
        Variant("float16", "tflite", Quantize.float16),
        Variant("dynamic", "tflite", Quantize.dynamic),
        Variant("int8", "tflite", Quantize.int8),
        Variant("int8+fastpath", "tflite", Quantize.int8, fast_path=True),
        Variant("int8+rewrites", "tflite", Quantize.int8, rewrites=True, tune_calibration=True),
        Variant("int8+adaround", "tflite", Quantize.int8, rewrites=True, tune_calibration=True, adaround=True),
        Variant("int8+fallback", "tflite", Quantize.int8, rewrites=True, tune_calibration=True, fallback="ops"),
        Variant("int8+fallback+layers", "tflite", Quantize.int8, rewrites=True, tune_calibration=True,
                  fallback="layers"),
        Variant("16x8", "tflite", Quantize.int8, activation="int16"),
        Variant("int8+qat", "tflite", Quantize.int8, qat=True),
    ),
    # onnxruntime QDQ: "int8" uses the target's activation type and min/max; "int8+calibration" the most
    # faithful calibration method; "int8+s8s8" int8 activations where the target's are uint8 (x86: no u8s8
    # saturation, slower); "int8+exclude" keeps the worst nodes in float. The last two use the chosen method.
    # "fused" / "fused+dynamic": float32 / dynamic int8 of onnxruntime's transformer-optimized graph (encoders
    # only, and only when a fusion fires). "16x8" (both formats): int16 activations, int8 weights, min/max,
    # built only where plain int8 misses the criterion (SIXTEEN_NOT_NEEDED). "int8+mixed": int8 with the fewest
    # layers promoted to int16 activations (and wide-range Concat outputs), built only where plain int8 misses.
    "onnx": (
        Variant("float32", "onnx", Quantize.none),
        Variant("dynamic", "onnx", Quantize.dynamic),
        Variant("fused", "onnx", Quantize.none, fused=True),
        Variant("fused+dynamic", "onnx", Quantize.dynamic, fused=True),
        Variant("int8", "onnx", Quantize.int8),
        Variant("int8+adaround", "onnx", Quantize.int8, adaround=True),  # plain int8's rounding learned
        Variant("int8+calibration", "onnx", Quantize.int8, tune_calibration=True),
        Variant("int8+s8s8", "onnx", Quantize.int8, activation="int8"),
        Variant("int8+exclude", "onnx", Quantize.int8, fallback="layers"),
        Variant("16x8", "onnx", Quantize.int8, activation="int16"),
        Variant("int8+mixed", "onnx", Quantize.int8, mixed=True),
    ),
}
BASELINE = "float32"

# What each --quantize mode builds besides the float32 baseline (`plan` keeps the format's own names).
# `int8` forces full-integer models with int8 activations: plain, with rewrites and tuned calibration (no float
# fallback or excluded nodes, which would not be full-integer; no 16x8, whose activations are int16: auto only).
PLANS: dict[Quantize, tuple[str, ...]] = {
    Quantize.auto: ("float16", "dynamic", "fused", "fused+dynamic", "int8", "int8+fastpath", "int8+rewrites",
                    "int8+adaround", "int8+fallback", "int8+fallback+layers", "int8+calibration", "int8+s8s8",
                    "int8+exclude", "16x8", "int8+mixed", "int8+qat"),
    Quantize.int8: ("int8", "int8+fastpath", "int8+rewrites", "int8+calibration", "int8+s8s8", "int8+qat"),
    Quantize.float16: ("float16",),
    Quantize.dynamic: ("dynamic",),
    Quantize.none: (),
}


def quantize_of(name: str) -> Quantize:
    """A variant's number format by its name (a table row's "format:" prefix ignored), e.g. int8+rewrites: int8;
    ValueError for a name that is neither a variant nor a number format."""
    bare = name.split(":")[-1]
    known = {v.name: v.quantize for variants in VARIANTS.values() for v in variants}
    return known[bare] if bare in known else Quantize(bare)


def variant_named(name: str, model_format: str, quantize: str | None = None) -> Variant:
    """The catalogue's variant of that name in that format (a table row read back); else (a sweep point's format
    axis "auto", a test's made-up row) one of that name with the number format given or implied by the name."""
    bare = name.split(":")[-1]
    found = [v for v in VARIANTS.get(model_format, ()) if v.name == bare]
    if found:
        return found[0]
    try:
        number = quantize_of(bare)
    except ValueError:  # a made-up name: the number format given
        number = Quantize(quantize or "none")
    return Variant(bare, model_format, number)


# What onnx2tf can make from an ONNX source (one run, min/max int8): the refinements need the Keras path.
ONNX2TF_ONLY = "onnx2tf (ONNX -> TFLite) writes float32, float16, dynamic and plain min/max int8 and 16x8 only"
NEEDS_CALIBRATION = "needs calibration data (--calib)"
QAT_NEEDS_KERAS = "quantization-aware fine-tuning trains a Keras model (.keras or .h5 source)"
SIXTEEN = "int16"  # a variant's activation type for 16x8


def is_16x8(c: Variant) -> bool:
    """int16 activations, int8 weights (TFLite's 16x8 mode; onnxruntime's 16-bit QDQ)."""
    return c.activation == SIXTEEN


def sixteen_not_needed(plain_meets: bool | None, plain_quality: str = "") -> str:
    """Why a 16x8 candidate is not built ('' = build it): it runs on slower kernels than int8 in both formats
    (LiteRT's reference 16x8 kernels, outside XNNPACK; onnxruntime's float ops between 16-bit Q/DQ), so it can
    only be chosen where plain int8 is not accurate enough. plain_meets None: plain int8 was not built (e.g.
    the unpruned reference of a 16x8 build): 16x8 is built."""
    if plain_meets:
        return f"not needed: plain int8 meets the criterion ({plain_quality})" if plain_quality else \
            "not needed: plain int8 meets the criterion"
    return ""


def adaround_not_needed(plain_meets: bool, refined_alone: bool, plain_quality: str = "") -> str:
    """Why an int8+adaround candidate is not built ('' = build it): learning the rounding costs seconds to
    minutes per model and changes no op, so it can only win on fidelity: it is tried where plain int8 misses
    the criterion on the tuning samples. refined_alone: it is the only refinement planned (the unpruned
    reference of a build that shipped it, which must be made the same way): built whatever plain int8 scores."""
    if plain_meets and not refined_alone:
        return f"not needed: plain int8 meets the criterion ({plain_quality})" if plain_quality else \
            "not needed: plain int8 meets the criterion"
    return ""


@dataclass(frozen=True)
class Plan:
    """The candidates of one format a build makes, baseline first, and why each other wanted one is not made."""

    build: tuple[Variant, ...]
    not_built: dict[str, str] = field(default_factory=dict)


def plan(quantize: Quantize, model_format: str, source: str = "keras", calibrated: bool = True,
         activation_type: str = "uint8", only: str | None = None, qat: bool = False) -> Plan:
    """What a --quantize mode builds in `model_format` from a `source` framework's graph.

    calibrated: calibration data was given (every int8 candidate needs it). activation_type: the target's
    onnxruntime int8 activations (an `int8+s8s8` candidate on an int8 target would be plain int8).
    only: just this variant, and what it is built from (plain int8 for an int8 refinement), e.g. the
    unpruned reference of a pruned build made the way the shipped variant was.
    qat: --qat was given; without it the int8+qat candidate is not planned at all (nor listed as not built).
    int8+fastpath respells an ONNX graph: from a Keras source it is not planned at all either.
    """
    wanted = [c for c in VARIANTS[model_format] if c.name in (BASELINE, *PLANS[quantize]) and (qat or not c.qat)
              and (source == "onnx" or not c.fast_path)]
    if only is not None:
        wanted = [c for c in wanted if c.name in (BASELINE, only) or (c.name == "int8" and only.startswith("int8"))]
    build, not_built = [], {}
    for c in wanted:
        why = _not_buildable(c, source, calibrated, activation_type)
        if why:
            not_built[c.name] = why
        else:
            build.append(c)
    return Plan(tuple(build), not_built)


def _not_buildable(c: Variant, source: str, calibrated: bool, activation_type: str) -> str:
    if c.quantize is Quantize.int8 and not calibrated:
        return NEEDS_CALIBRATION
    if c.qat and source != "keras":
        return QAT_NEEDS_KERAS
    if (source, c.format) == ("onnx", "tflite") and (c.rewrites or c.tune_calibration or c.fallback):
        return ONNX2TF_ONLY
    if c.activation and c.activation == activation_type:
        return f"{c.activation} activations are the target's: this is plain int8"
    return ""


def as_conversion_error(exc: BaseException) -> EdgekilnError:
    """Our error for a failure that ends the build: ours as it is, a third-party one as one line."""
    if isinstance(exc, EdgekilnError):
        return exc
    return ConversionError(f"int8 {failure_note(exc)}", "try --quantize auto, dynamic or none")


def failure_note(exc: BaseException) -> str:
    """A failed candidate's one-line reason in the table (`failed: ...`, as a failed format says)."""
    if isinstance(exc, EdgekilnError):
        return f"failed: {exc.one_line()}"
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
    return f"failed: {type(exc).__name__}: {text}"
