"""The Recipe: every choice of a build, frozen and validated, from CLI flags or a TOML file.

The CLI builds the same Recipe a user could save to a file (`--recipe build.toml`), so the two
cannot drift; the resolved recipe is embedded in the manifest so a bundle can be rebuilt.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgekiln.compiler import input_shapes
from edgekiln.compiler.errors import DataError, InputModelError, RecipeError
from edgekiln.compiler.paths import existing


class Quantize(StrEnum):
    """How weights and activations are stored in the compiled model."""

    auto = "auto"        # build the candidates below, measure them, ship the fastest accurate enough one
    int8 = "int8"        # full-integer: int8 weights (per channel) and activations, calibrated
    float16 = "float16"  # float16 weights, float32 compute
    dynamic = "dynamic"  # int8 weights, float activations quantized on the fly
    none = "none"        # float32 as trained


class Calibration(StrEnum):
    """How int8 activation ranges are set from the calibration data."""

    auto = "auto"              # the most faithful of the three on held-back samples
    minmax = "minmax"
    percentile = "percentile"  # 99.99th percentile of |x|
    entropy = "entropy"        # TensorRT's KL-divergence threshold


PERCENTILE = 99.99  # Calibration.percentile's share of |x| (TFLite path; TensorRT's and onnxruntime's usual choice)

CalibrationMethod = Calibration  # the emitters' name for it; ONNX maps `auto` to minmax (see pipeline)


class Format(StrEnum):
    """The artifact format, i.e. which interpreter runs it on the device; auto: measured (search/formats.py)."""

    auto = "auto"
    tflite = "tflite"
    onnx = "onnx"


ARTIFACT_FORMATS = (Format.tflite, Format.onnx)  # what `auto` chooses among


class Recover(StrEnum):
    """How accuracy is recovered after channels are removed (compiler/prune/recover.py)."""

    auto = "auto"                # the best available for the source: distill (Keras), reconstruct (ONNX)
    distill = "distill"          # train against the original model's outputs on calibration data (no labels)
    finetune = "finetune"        # train on labelled calibration data (labels 'y' in --calib)
    reconstruct = "reconstruct"  # least-squares re-fit of the layers after a pruned one; no training
    none = "none"                # keep the pruned weights as they are (accuracy usually collapses)


class PruneCriterion(StrEnum):
    """How a channel's importance is scored (compiler/prune/importance.py)."""

    l1 = "l1"
    l2 = "l2"
    bn = "bn"

# Inclusive bounds of every numeric option; a value outside is refused where the Recipe is built (CLI, TOML
# and Python API alike). The upper bounds are far above any sensible value: they catch typos (an extra
# digit) before minutes of work, not preferences.
LIMITS: dict[str, tuple[float, float]] = {
    "calib_samples": (1, 1_000_000),
    "holdout_samples": (0, 1_000_000),
    "golden_samples": (1, 1_000),      # golden.npz ships to every device
    "batch": (1, 4_096),
    "threads": (1, 1_024),
    "bench_runs": (1, 1_000_000),
    "max_drop": (0.0, 100.0),          # percentage points of top-1 accuracy; < 0 is a budget nothing meets
    "prune_time": (1.0, 1e6),          # seconds
    "seq_len": (1, 65_536),            # tokens
    "drop_layers": (0, 1_000),         # encoder blocks
    "vocab_size": (1, 10_000_000),     # tokens kept by --vocab-from
    "distill": (0.0, 1.0),             # a student's width (compiler/distill/), or "auto"
    "min_cosine": (0.0, 1.0),          # cosine similarity floors, above 0 (OPEN_BELOW): a floor of 0 or less
    "min_cosine_p5": (0.0, 1.0),       # passes vectors at right angles to the source's, no floor at all
}
# --embedding without a floor: outputs keep their direction to ~8 degrees on average, and at most one sample in
# twenty is bent past ~18 degrees (the --drop-layers / --prune-heads auto default, compiler/prune/encoder_auto.py)
EMBEDDING_FLOOR = (0.99, 0.95)
OPEN_BELOW = frozenset({"min_cosine", "min_cosine_p5", "distill"})  # the lower bound itself is refused
INTEGERS = frozenset(LIMITS) - {"max_drop", "prune_time"} - OPEN_BELOW
BOOLS = ("int8_io", "unsafe", "force", "embedding", "qat", "emulate_witness")
# What an output is, for judging it (compiler/evaluate/output_kinds.py): a class decision, an embedding, values.
OUTPUT_KINDS = ("class", "embedding", "values")
# text (or os.PathLike from Python)
PATHS = ("source", "target", "output", "calib", "eval", "train", "tokenizer", "vocab_from")
AUTO = frozenset({"drop_layers", "distill"})  # numeric options that also take "auto"
# None: not given
OPTIONAL = ("threads", "prune_time", "seq_len", "drop_layers", "min_cosine", "min_cosine_p5", "vocab_size",
            "distill")
NULLABLE_PATHS = ("calib", "eval", "train", "tokenizer", "vocab_from")
NORMALISATION_CHANNELS = (1, 3)  # --mean / --std: one value for every channel, or one per RGB channel


@dataclass(frozen=True)
class Recipe:
    """A build, fully described.

    Attributes:
        source: the trained model (.keras, .h5, .onnx, SavedModel directory).
        target: a target name (`edgekiln targets`) or a target TOML file.
        output: the bundle directory to create.
        format: artifact format; auto builds every format the target runs and ships the measured best; None means
            auto with --quantize auto, else the target's default format.
        quantize: see Quantize; int8 needs calibration data; auto without it considers no int8 variant.
        calibration: see Calibration; with auto the plain `int8` candidate keeps min/max (it is the reference).
        calib: calibration data (unlabelled is fine).
        eval: labelled evaluation data.
        calib_samples: at most this many samples feed the quantizer.
        holdout_samples: 0 holds no calibration sample back: fidelity is judged on the evaluation data, else on the
            calibration samples themselves (the manifest says so). Any other value: every calibration sample is
            judged by K-fold cross-fitting, none by a model calibrated or tuned on it (compiler/folds.py).
        golden_samples: samples stored in golden.npz for on-device validation.
        mean: image-folder normalisation, x = (pixel / 255 - mean) / std, per channel or scalar.
        std: the divisor of that normalisation (see mean).
        int8_io: with int8, make the model's inputs/outputs int8 too (else float32 I/O around int8 compute).
        max_drop: accuracy budget in percentage points; exceeding it is reported prominently.
        min_cosine: a cosine floor for embedding outputs: the mean of each output vector's cosine to the source's
            on held-back samples (e.g. 0.98); it replaces the SQNR floor, and with labels applies beside the
            accuracy budget (search/choose.Criterion). None: not given.
        min_cosine_p5: the same floor on the 5th percentile of those cosines (e.g. 0.95). None: not given.
        embedding: the model's float outputs are embeddings (sentence or token vectors), judged by their cosine to
            the source's only: top-1 agreement over an embedding's dimensions means nothing. Without a cosine floor
            the default one applies (EMBEDDING_FLOOR: mean 0.99, p5 0.95).
        output_kind: how each named output is judged, output name -> class (top-1 agreement), embedding (cosine)
            or values (SQNR) (compiler/evaluate/output_kinds.py); None: inferred, and printed in the build's table.
        batch: the compiled batch size where the source leaves it open (ONNX symbolic batch axis).
        threads: interpreter threads for host measurement; None means the target's default.
        bench_runs: timed runs per latency measurement.
        prune: remove this fraction of every prunable channel group (0 <= R < 1), or "auto" to choose per-group
            ratios under max_drop; None: no pruning.
        recover: how accuracy is recovered after pruning (see compiler/prune/recover.py).
        prune_criterion: channel importance, l1 | l2 | bn.
        unsafe: allow loading models whose layers carry code (Lambda); never the default.
        force: replace an existing output directory.
        input_shape: static shapes for an ONNX source's dynamic axes, input name -> dims ("" for the only input;
            TOML: a table {images = [1, 3, 320, 320]} or a list); axes left open take the data's sample shape.
        main_output: the output accuracy is scored on (labels); None: the first class vector that fits them.
        train: training data for recovery after pruning (same formats as calib; labels y: fine-tuning, else
            distillation); None: recovery trains on the calibration samples.
        qat: add an int8+qat candidate (quantization-aware fine-tuning on `train`, graph/keras_qat.py), built only
            where plain int8 misses the criterion; needs `train`, a Keras source and an int8 mode.
        distill: replace the source by a student of its architecture at this width (0 < w <= 1), or "auto" (the
            narrowest within the budget), trained on `train` before pruning and quantization (compiler/distill/).
        prune_time: seconds after which the --prune auto search starts no new probe; None: no cap.
        prune_heads: remove this share of every self-attention layer's heads (Keras MultiHeadAttention), or "auto"
            to search the share under the budget (compiler/prune/encoder_auto.py).
        drop_layers: remove this many whole encoder blocks (the last ones; the residual stream passes through), or
            "auto" to search the count under the budget.
        vocab_from: keep the word-embedding rows of the tokens this corpus (text, one sentence a line) produces, the
            special tokens and the corpus's single characters, and ship the tokenizer numbering them
            (compiler/vocab.py); "auto": the calibration sentences are the corpus. None: the whole vocabulary.
        vocab_size: with vocab_from, keep this many tokens (filled in the vocabulary's own order, or cut to the
            corpus's most frequent).
        tokenizer: a tokenizer.json for text data (.txt, one sentence a line; `LABEL<TAB>sentence` labels it).
        seq_len: the token sequence length where the model leaves it open (text is padded / truncated to it).
        variant: ship exactly this candidate of the format (e.g. "int8+rewrites"; needs a single format): only it,
            what it is built from and the float32 baseline are built. A sweep point's recipe pins it, so
            `build --recipe` remakes that point.
        emulate_witness: count each candidate's executed instructions on the target's emulated core (QEMU with
            edgekiln's plugin, search/emulated.py): a cross-check beside the estimate, which ranks the candidates
            only where the target file's cross-validated errors say it beats the cost model.
    """

    source: str
    target: str = "rpi4"
    output: str = ""
    format: Format | None = None
    quantize: Quantize = Quantize.auto
    calibration: Calibration = Calibration.auto
    calib: str | None = None
    eval: str | None = None
    calib_samples: int = 256
    holdout_samples: int = 64
    golden_samples: int = 8
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    int8_io: bool = True
    max_drop: float = 1.0
    batch: int = 1
    threads: int | None = None
    bench_runs: int = 100
    prune: float | str | None = None
    recover: Recover = Recover.auto
    prune_criterion: PruneCriterion = PruneCriterion.l1
    unsafe: bool = False
    force: bool = False
    input_shape: dict[str, tuple[int, ...]] | None = None
    main_output: str | None = None
    variant: str | None = None
    train: str | None = None
    prune_time: float | None = None
    prune_heads: float | str | None = None
    drop_layers: int | str | None = None
    tokenizer: str | None = None
    seq_len: int | None = None
    vocab_from: str | None = None
    vocab_size: int | None = None
    min_cosine: float | None = None
    min_cosine_p5: float | None = None
    embedding: bool = False
    output_kind: dict[str, str] | None = None
    qat: bool = False
    distill: float | str | None = None
    emulate_witness: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "drop_layers", _drop_count(self.drop_layers))
        object.__setattr__(self, "output_kind", _output_kinds(self.output_kind))
        self._normalise_scalars()
        object.__setattr__(self, "input_shape", input_shapes.normalise(self.input_shape))
        if self.main_output is not None and not isinstance(self.main_output, str):
            raise RecipeError(f"main_output must be an output name (text), got {self.main_output!r}")
        if self.variant is not None and not isinstance(self.variant, str):
            raise RecipeError(f"variant must be a candidate name (text), got {self.variant!r}")
        object.__setattr__(self, "quantize", _enum(Quantize, self.quantize, "quantize"))
        object.__setattr__(self, "calibration", _enum(Calibration, self.calibration, "calibration"))
        if self.format is not None:
            object.__setattr__(self, "format", _enum(Format, self.format, "format"))
        object.__setattr__(self, "recover", _enum(Recover, self.recover, "recover"))
        object.__setattr__(self, "prune_criterion", _enum(PruneCriterion, self.prune_criterion, "prune_criterion"))
        object.__setattr__(self, "prune", _prune_ratio(self.prune))
        object.__setattr__(self, "prune_heads", _head_ratio(self.prune_heads))
        object.__setattr__(self, "mean", _channel_values(self.mean, "mean"))
        object.__setattr__(self, "std", _channel_values(self.std, "std"))
        if not self.output:
            object.__setattr__(self, "output", str(Path("build") / Path(self.source.rstrip("/")).stem))
        if self.embedding is True and self.min_cosine is None and self.min_cosine_p5 is None:
            object.__setattr__(self, "min_cosine", EMBEDDING_FLOOR[0])
            object.__setattr__(self, "min_cosine_p5", EMBEDDING_FLOOR[1])
        self._check()

    def _check(self) -> None:
        if self.quantize is Quantize.int8 and not self.calib:
            raise RecipeError("int8 quantization needs calibration data",
                              "pass --calib DATA (.npz, .npy or an image folder), or --quantize float16|dynamic|none")
        if self.prune is not None and (self.prune_heads is not None or self.drop_layers is not None):
            other = "--prune-heads" if self.prune_heads is not None else "--drop-layers"
            raise RecipeError(f"--prune and {other} cannot be combined",
                              "conv channels (CNNs) or heads / layers (transformers), one per build")
        if self.drop_layers is not None and not self.calib:
            raise RecipeError("--drop-layers needs calibration data: the blocks left are re-fitted on it",
                              "pass --calib DATA")
        if self.prune_heads is not None and not self.calib:
            raise RecipeError("--prune-heads needs calibration data: heads are scored and re-fitted on it",
                              "pass --calib DATA")
        if self.vocab_from is not None and not self.tokenizer:
            raise RecipeError("--vocab-from prunes the tokenizer's vocabulary: it needs --tokenizer tokenizer.json")
        if self.vocab_size is not None and self.vocab_from is None:
            raise RecipeError("--vocab-size sets how many tokens --vocab-from keeps",
                              "add --vocab-from CORPUS.txt (or auto), or leave out --vocab-size")
        if self.variant is not None and self.format in (None, Format.auto):
            raise RecipeError(f"variant '{self.variant}' needs one format", "add format = \"tflite\" or \"onnx\"")
        if self.qat:
            self._check_qat()
        if self.distill is not None and self.train is None:
            raise RecipeError("--distill trains a student on training data", "pass --train DATA (labels y help)")
        if self.format is Format.onnx and self.quantize is Quantize.float16:  # else refused after the conversion
            raise RecipeError("--quantize float16 is not available for ONNX artifacts",
                              "use --quantize int8, dynamic or none, or --format tflite")
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None or value == "auto":
                continue
            above = value > low if name in OPEN_BELOW else value >= low
            if not (above and value <= high):  # NaN fails every comparison
                raise RecipeError(f"{name} must be {_range(name, low, high)}, got {value:g}", _HINTS.get(name, ""))
        if any(s <= 0 for s in self.std):
            raise RecipeError(f"std must be positive, got {list(self.std)}",
                              "x = (pixel / 255 - mean) / std; e.g. --std 0.229,0.224,0.225")

    def _check_qat(self) -> None:
        """--qat refused in one line where it cannot run (never a silent no-op)."""
        if self.train is None:
            raise RecipeError("--qat fine-tunes the model on training data", "pass --train DATA (labels y help)")
        if self.quantize not in (Quantize.auto, Quantize.int8) or self.format is Format.onnx:
            raise RecipeError("--qat makes an int8 TFLite candidate",
                              "use --quantize auto or int8, with --format tflite or auto")

    def _normalise_scalars(self) -> None:
        """Types first (a TOML file or a Python caller can pass anything): ints, numbers, bools, text."""
        for name in LIMITS:
            value = getattr(self, name)
            if (value is None and name in OPTIONAL) or (value == "auto" and name in AUTO):
                continue
            integral = isinstance(value, numbers.Integral)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or (name in INTEGERS and not integral):
                kind = "an integer" if name in INTEGERS else "a number"
                raise RecipeError(f"{name} must be {kind}, got {value!r}")
            object.__setattr__(self, name, int(float(value)) if name in INTEGERS else float(value))
        for name in BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise RecipeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in PATHS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, value := os.fspath(value))
            if not (value is None and name in NULLABLE_PATHS) and not isinstance(value, str):
                raise RecipeError(f"{name} must be a path (text), got {value!r}")
        if not self.source or not self.target:
            raise RecipeError("a recipe needs a source model and a target", "e.g. edgekiln build model.keras -t rpi4")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(mean=list(self.mean), std=list(self.std), quantize=str(self.quantize),
                    format=str(self.format) if self.format else None, recover=str(self.recover),
                    prune_criterion=str(self.prune_criterion), calibration=str(self.calibration),
                    input_shape=input_shapes.to_toml(self.input_shape))
        return data

    def replace(self, **changes: Any) -> Recipe:  # to dataclasses.replace; __post_init__ checks each value
        return dataclasses.replace(self, **changes)


_HINTS = {
    "max_drop": "the accuracy budget in percentage points, e.g. --max-drop 1 allows 1 point less top-1 accuracy",
    "min_cosine": "the mean cosine similarity to the source's outputs, e.g. --min-cosine 0.98",
    "min_cosine_p5": "the 5th percentile of the cosine similarity to the source's outputs, e.g. --min-cosine-p5 0.95",
    "golden_samples": "a few samples suffice to validate a device; golden.npz ships with every bundle",
    "threads": "leave it out to use the target's default",
}


def _range(name: str, low: float, high: float) -> str:
    """How the limits of a numeric option read in its error."""
    if name in OPEN_BELOW:
        return f"a number above {low:g} and at most {high:g}"
    return f"{'an integer' if name in INTEGERS else 'a number'} from {low:g} to {high:g}"


def _channel_values(value: object, field: str) -> tuple[float, ...]:
    """--mean / --std: one finite number or one per RGB channel."""
    values = value if isinstance(value, list | tuple) else (value,)
    if (len(values) not in NORMALISATION_CHANNELS
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
            or not all(math.isfinite(v) for v in values)):
        raise RecipeError(f"{field} must be 1 or 3 finite numbers, got {value!r}",
                          f"e.g. --{field} 0.5 or --{field} 0.485,0.456,0.406")
    return tuple(float(v) for v in values)


def check_paths(recipe: Recipe) -> None:
    """The files a recipe names exist, before any work (the output is checked by the bundle writer)."""
    existing(recipe.source, "model", error=InputModelError)
    for role, path in (("calibration data", recipe.calib), ("evaluation data", recipe.eval),
                       ("training data", recipe.train), ("tokenizer", recipe.tokenizer),
                       ("vocabulary corpus", None if recipe.vocab_from == "auto" else recipe.vocab_from)):
        if path:
            existing(path, role, error=DataError)


def _enum(kind: type[StrEnum], value: object, field: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        raise RecipeError(f"{field} must be one of {', '.join(m.value for m in kind)}, got '{value}'") from None


def _prune_ratio(value: object) -> float | str | None:
    """None, "auto", or a ratio 0 <= R < 1 (given as a number or its text)."""
    return _ratio(value, "prune", "0.5 removes half of the channels of every prunable group", auto=True)


def _output_kinds(value: object) -> dict[str, str] | None:
    """--output-kind NAME=KIND (repeatable; a recipe file: a table NAME = "KIND") as output name -> kind."""
    if value is None or value == {} or value == []:
        return None
    pairs = value.items() if isinstance(value, dict) else \
        [str(flag).partition("=")[::2] for flag in (value if isinstance(value, list | tuple) else [value])]
    kinds = {}
    for name, kind in pairs:
        if not isinstance(name, str) or not name or kind not in OUTPUT_KINDS:
            raise RecipeError(f"output kind {name}={kind} is not NAME=KIND with KIND one of {', '.join(OUTPUT_KINDS)}",
                              "e.g. --output-kind scores=class --output-kind boxes=values")
        kinds[name] = str(kind)
    return kinds


def _head_ratio(value: object) -> float | str | None:
    """None, "auto", or the share of every attention layer's heads to remove, 0 <= R < 1."""
    return _ratio(value, "prune_heads", "0.5 removes half of the heads of every attention layer (one head always "
                  "stays)", auto=True)


def _drop_count(value: object) -> object:
    """--drop-layers: "auto" stays, the text of an integer becomes it (the CLI passes text); the rest is
    checked with the other numbers."""
    if not isinstance(value, str) or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise RecipeError(f"drop_layers must be an integer or 'auto', got '{value}'",
                          "e.g. --drop-layers 1 (the last block) or --drop-layers auto") from None


def _ratio(value: object, field: str, hint: str, auto: bool = False) -> float | str | None:
    """None, a ratio 0 <= R < 1 (a number or its text), or "auto" where `auto` allows it."""
    if value is None or (auto and value == "auto"):
        return value
    what = "a ratio in [0, 1)" + (" or 'auto'" if auto else "")
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RecipeError(f"{field} must be {what}, got '{value}'") from None
    if not 0.0 <= ratio < 1.0:
        raise RecipeError(f"{field} must be {what}, got {ratio}", hint)
    return ratio


def from_toml(path: str | Path, **overrides: object) -> Recipe:
    """A recipe file (same keys as Recipe), with explicitly given CLI values taking precedence."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"recipe {path} is not a valid TOML file: {exc}",
                          "one `key = value` per line, keys as in `edgekiln build --help`") from None
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"recipe {path} has unknown keys: {', '.join(unknown)}",
                          f"known keys: {', '.join(sorted(known))}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    if "source" not in data:
        raise RecipeError(f"recipe {path} names no source model")
    return Recipe(**data)
