"""The Recipe: every choice of a build, frozen and validated, from CLI flags or a TOML file.

The CLI builds the same Recipe a user could save to a file (`--recipe build.toml`), so the two
cannot drift; the resolved recipe is embedded in the manifest so a bundle can be rebuilt.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import shapes
from .errors import RecipeError
from .prune.importance import Criterion
from .prune.recover import Recover


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


CalibrationMethod = Calibration  # the emitters' name for it; ONNX maps `auto` to minmax (see pipeline)


class Format(StrEnum):
    """The artifact format, i.e. which interpreter runs it on the device; auto: measured (compiler/formats.py)."""

    auto = "auto"
    tflite = "tflite"
    onnx = "onnx"


ARTIFACT_FORMATS = (Format.tflite, Format.onnx)  # what `auto` chooses among


@dataclass(frozen=True)
class Recipe:
    """A build, fully described.

    source: the trained model (.keras, .h5, .onnx, SavedModel directory).
    target: a target name (`edgekiln targets`) or a target TOML file.
    output: the bundle directory to create.
    format: artifact format; auto builds every format the target runs and ships the measured best; None
        means auto with --quantize auto, else the target's default format.
    quantize: see Quantize; int8 needs calibration data; auto without it considers no int8 variant.
    calibration: see Calibration; with auto the plain `int8` candidate keeps min/max (it is the reference).
    calib / eval: calibration data (unlabelled is fine) and labelled evaluation data.
    calib_samples: at most this many samples feed the quantizer.
    holdout_samples: calibration samples held back from the quantizer: half tune the candidate search
        (calibration method, float fallbacks), half measure fidelity (stages.load_datasets).
    golden_samples: samples stored in golden.npz for on-device validation.
    mean / std: image-folder normalisation, x = (pixel / 255 - mean) / std, per channel or scalar.
    int8_io: with int8, make the model's inputs/outputs int8 too (else float32 I/O around int8 compute).
    max_drop: accuracy budget in percentage points; exceeding it is reported prominently.
    batch: the compiled batch size where the source leaves it open (ONNX symbolic batch axis).
    threads: interpreter threads for host measurement; None means the target's default.
    bench_runs: timed runs per latency measurement.
    prune: remove this fraction of every prunable channel group (0 <= R < 1), or "auto" to choose
        per-group ratios under max_drop; None: no pruning.
    recover: how accuracy is recovered after pruning (see compiler/prune/recover.py).
    prune_criterion: channel importance, l1 | l2 | bn.
    unsafe: allow loading models whose layers carry code (Lambda); never the default.
    force: replace an existing output directory.
    input_shape: static shapes for an ONNX source's dynamic axes, input name -> dims ("" for the only input;
        TOML: a table {images = [1, 3, 320, 320]} or a list); axes left open take the data's sample shape.
    main_output: the output accuracy is scored on (labels); None: the first class vector that fits them.
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
    prune_criterion: Criterion = Criterion.l1
    unsafe: bool = False
    force: bool = False
    input_shape: dict[str, tuple[int, ...]] | None = None
    main_output: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", shapes.normalise(self.input_shape))
        object.__setattr__(self, "quantize", _enum(Quantize, self.quantize, "quantize"))
        object.__setattr__(self, "calibration", _enum(Calibration, self.calibration, "calibration"))
        if self.format is not None:
            object.__setattr__(self, "format", _enum(Format, self.format, "format"))
        object.__setattr__(self, "recover", _enum(Recover, self.recover, "recover"))
        object.__setattr__(self, "prune_criterion", _enum(Criterion, self.prune_criterion, "prune_criterion"))
        object.__setattr__(self, "prune", _prune_ratio(self.prune))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not self.output:
            object.__setattr__(self, "output", str(Path("build") / Path(self.source.rstrip("/")).stem))
        self._check()

    def _check(self) -> None:
        if self.quantize is Quantize.int8 and not self.calib:
            raise RecipeError("int8 quantization needs calibration data",
                              "pass --calib DATA (.npz, .npy or an image folder), or --quantize float16|dynamic|none")
        for name in ("calib_samples", "golden_samples", "bench_runs", "batch"):
            if getattr(self, name) < 1:
                raise RecipeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.holdout_samples < 0 or (self.threads is not None and self.threads < 1):
            raise RecipeError("holdout_samples must be >= 0 and threads >= 1")
        if any(s == 0 for s in self.std):
            raise RecipeError("std must not contain 0")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(mean=list(self.mean), std=list(self.std), quantize=str(self.quantize),
                    format=str(self.format) if self.format else None, recover=str(self.recover),
                    prune_criterion=str(self.prune_criterion), calibration=str(self.calibration),
                    input_shape=shapes.to_toml(self.input_shape))
        return data

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def _enum(kind: type[StrEnum], value: object, field: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        raise RecipeError(f"{field} must be one of {', '.join(m.value for m in kind)}, got '{value}'") from None


def _prune_ratio(value: object) -> float | str | None:
    """None, "auto", or a ratio 0 <= R < 1 (given as a number or its text)."""
    if value is None or value == "auto":
        return value  # type: ignore[return-value]
    try:
        ratio = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RecipeError(f"prune must be a ratio in [0, 1) or 'auto', got '{value}'") from None
    if not 0.0 <= ratio < 1.0:
        raise RecipeError(f"prune must be a ratio in [0, 1) or 'auto', got {ratio}",
                          "0.5 removes half of the channels of every prunable group")
    return ratio


def from_toml(path: str | Path, **overrides: Any) -> Recipe:
    """A recipe file (same keys as Recipe), with explicitly given CLI values taking precedence."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"recipe {path} has unknown keys: {', '.join(unknown)}",
                          f"known keys: {', '.join(sorted(known))}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    if "source" not in data:
        raise RecipeError(f"recipe {path} names no source model")
    return Recipe(**data)
