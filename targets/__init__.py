"""Target devices as data: one TOML file per device, loaded into a frozen `Target`.

A new device is a new file, not new code. `load(name)` also accepts a path to a TOML file
of the same form, so a user can describe their own board without editing the package.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).parent
# data files in this folder that describe no device
_NOT_TARGETS = {"wheels", "op_versions", "onnx_contrib_ops", "locks", "runtime_memory"}


NO_BAND = "no published figure for this board: band unknown"


class TargetFileError(ValueError):
    """A target name or file that cannot be used (the compiler wraps it in its own error)."""


@dataclass(frozen=True)
class Anchor:
    """A published latency of a known model on this device, and what the cost model says for it.

    model: an architecture bench/anchor_models.py can build; dtype: float32 or int8.
    estimate_ms: what the stored figures give for it; fitted: whether those figures were fitted on it.
    loo_ms: its leave-one-out prediction, by figures fitted on the board's other anchors only (None when
        not cross-validated); loo_at_bound: the figures that leave-one-out fit left at a bound of their
        range (with 1 degree of freedom, a figure the other anchors do not determine); source: where the
        published figure comes from.
    """

    model: str
    dtype: str
    published_ms: float
    estimate_ms: float
    fitted: bool
    loo_ms: float | None = None
    source: str = ""
    loo_at_bound: tuple[str, ...] = ()

    @property
    def error(self) -> float:
        """Relative error of the stored figures' estimate, (estimate - published) / published: on a fitted
        anchor this is the fit's residual, not a test of it."""
        return self.estimate_ms / self.published_ms - 1

    @property
    def loo_error(self) -> float | None:
        """Relative error of the leave-one-out prediction: the figures that made it never saw this anchor."""
        return None if self.loo_ms is None else self.loo_ms / self.published_ms - 1


@dataclass(frozen=True)
class Estimate:
    """The throughput figures of the latency estimate (compiler/estimate.py) for one device.

    fp32_gmacs_per_core / int8_gmacs_per_core: sustained GMAC/s of one core in float / int8 kernels.
    bandwidth_gbs: sustained memory bandwidth, GB/s; op_overhead_us: fixed cost per op, serial.
    thread_efficiency: each extra thread adds this fraction of a core.
    error_band: (lowest, highest) leave-one-out relative error over this board's anchors (each predicted
        by figures fitted on the others); None when the board has no published figure: band unknown.
    ratio_error: the largest cross-validated relative error of an int8 / float32 latency ratio of one
        architecture on this board (what the variant choice compares); None when not measured.
    at_bound: the figures the fit left at a bound of its range (not determined by the anchors).
    anchors: the published figures and the estimate for each; derived_from: the target whose
        fitted figures were scaled to this one when it has no anchors of its own.
    """

    fp32_gmacs_per_core: float
    int8_gmacs_per_core: float
    bandwidth_gbs: float
    op_overhead_us: float
    thread_efficiency: float
    error_band: tuple[float, float] | None = None
    anchors: tuple[Anchor, ...] = ()
    derived_from: str = ""
    basis: str = ""
    sources: tuple[str, ...] = ()
    ratio_error: float | None = None
    at_bound: tuple[str, ...] = ()

    @property
    def mean_abs_loo_error(self) -> float | None:
        """Mean |leave-one-out error| over the anchors (None without cross-validated anchors)."""
        errors = [abs(a.loo_error) for a in self.anchors if a.loo_error is not None]
        return sum(errors) / len(errors) if errors else None

    @property
    def fitted_on(self) -> tuple[str, ...]:
        return tuple(f"{a.model} {a.dtype}" for a in self.anchors if a.fitted)

    @property
    def held_out(self) -> tuple[str, ...]:
        return tuple(f"{a.model} {a.dtype}" for a in self.anchors if not a.fitted)

    def basis_text(self) -> str:
        """One line saying what the figures rest on."""
        bound = f"; {', '.join(self.at_bound)} at the fit's bound (not determined by the anchors)" \
            if self.at_bound else ""
        if not self.anchors:
            return (self.basis or f"derived from {self.derived_from}") + f"; {NO_BAND}{bound}"
        n = len(self.anchors)
        if self.error_band is None:
            return f"fitted on {len(self.fitted_on)} of {n} published anchors; {NO_BAND}{bound}"
        lo, hi = self.error_band
        dof = max(n - 5, 0)
        folds = [a for a in self.anchors if a.loo_at_bound]
        weak = sorted({name for a in folds for name in a.loo_at_bound})
        loose = f"; {len(folds)} of {n} folds left {', '.join(weak)} at a bound" if folds else ""
        return (f"fitted on {len(self.fitted_on)} published anchors of this board; each held out in turn, "
                f"leave-one-out error {lo * 100:+.0f}% .. {hi * 100:+.0f}% (4 rates fitted on {n - 1} points: "
                f"{dof} degree{'' if dof == 1 else 's'} of freedom{loose}){bound}")


@dataclass(frozen=True)
class EmulatedCosts:
    """From executed-instruction counts on the emulated core to milliseconds (compiler/emulate/cycles.py).

    core: the core, as ARM names it; clock_ghz: the board's clock; cycles: reciprocal throughput per
        instruction class (compiler/emulate/witness.CLASSES), with cycles_basis saying where they come from
        ("assumed" when not quoted from the core's optimization guide); stall: the one fitted factor
        (measured stalls over the ideal issue rate), stall_basis: fitted on which anchors, or borrowed from
        which board. error_band / mean_abs_error: leave-one-out relative error of the emulated estimate over
        the board's published anchors; ratio_error: largest cross-validated error of an int8 / float32 ratio
        (None: not measured on this board: the emulated estimate can never rank candidates here).
    """

    core: str
    clock_ghz: float
    cycles: dict[str, float]
    cycles_basis: str
    stall: float
    stall_basis: str
    error_band: tuple[float, float] | None = None
    mean_abs_error: float | None = None
    ratio_error: float | None = None


@dataclass(frozen=True)
class Target:
    """The facts about one device that the compiler needs.

    name: short id used on the command line (`--target rpi4`).
    arch: machine as `uname -m` prints it (aarch64, armv7l, x86_64).
    cpu: human description of the CPU; qemu_cpu: QEMU's name for its core (for emulation).
    ram_mb / ram_budget_mb: installed RAM of the smallest common variant, and what one
        inference process may use of it with the OS and a desktop-less userland running.
    python / glibc: what the device's OS ships; they decide which wheels install.
    tflite_interpreter / onnx_interpreter: the pinned interpreter package for each format.
    numpy: numpy pin that works with that interpreter on that Python.
    default_threads: threads used for measured and estimated latency.
    onnx_activation_type: int8 on ARM, uint8 on x86 (onnxruntime's fast kernels differ).
    sources: where the facts come from.
    """

    name: str
    description: str
    arch: str
    cpu: str
    qemu_cpu: str
    cores: int
    ram_mb: int
    ram_budget_mb: int
    os: str
    python: str
    glibc: str
    default_threads: int
    default_format: str
    onnx_activation_type: str
    tflite_interpreter: str
    onnx_interpreter: str
    numpy: str
    sources: tuple[str, ...] = field(default_factory=tuple)
    apt_packages: tuple[str, ...] = ()
    estimate: Estimate | None = None
    emulated: EmulatedCosts | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict for the manifest (the estimate's figures are reported in latency.target_estimate)."""
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
        data["apt_packages"] = list(self.apt_packages)
        data.pop("estimate")
        data.pop("emulated")
        return data


def names() -> list[str]:
    """Names of the targets shipped with edgekiln, sorted."""
    return sorted(p.stem for p in _HERE.glob("*.toml") if p.stem not in _NOT_TARGETS)


def load(name_or_path: str) -> Target:
    """Load a shipped target by name, or a target TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = _HERE / f"{name_or_path}.toml"
        if not path.is_file() or name_or_path in _NOT_TARGETS:
            raise TargetFileError(f"unknown target '{name_or_path}'; known targets: {', '.join(names())}")
    if not path.is_file():
        raise TargetFileError(f"target file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise TargetFileError(f"cannot read target file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TargetFileError(f"target file {path} is not valid TOML: {exc}") from None
    return _from_dict(data, path)


def _from_dict(data: dict[str, object], path: Path) -> Target:
    known = {f.name for f in dataclasses.fields(Target)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TargetFileError(f"target file {path} has unknown keys: {', '.join(unknown)}")
    required = {f.name for f in dataclasses.fields(Target) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise TargetFileError(f"target file {path} lacks keys: {', '.join(missing)}")
    values = dict(data)
    for name in ("sources", "apt_packages"):
        values[name] = _texts(values.get(name, ()), name, path)
    if "estimate" in values:
        values["estimate"] = _estimate(values["estimate"], path)
    if "emulated" in values:
        values["emulated"] = _emulated(values["emulated"], path)
    _check_types(values, path)
    target = Target(**values)  # type: ignore[arg-type]
    _check_values(target, path)
    return target


def _texts(value: object, name: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TargetFileError(f"target file {path}: '{name}' must be a list of strings, got {value!r}")
    return tuple(value)


# The values a field may take (a typo here would send the wrong wheel or the wrong int8 kernels).
# (An unknown arch is left to the wheel check, which names what it lacks.)
CHOICES = {"default_format": ("tflite", "onnx"), "onnx_activation_type": ("int8", "uint8")}


def _check_values(target: Target, path: Path) -> None:
    """Ranges and choices, after the types: counts positive, the RAM budget within the RAM."""
    for name, allowed in CHOICES.items():
        if getattr(target, name) not in allowed:
            raise TargetFileError(f"target file {path}: '{name}' must be one of {', '.join(allowed)}, "
                                  f"got {getattr(target, name)!r}")
    for name in ("cores", "ram_mb", "ram_budget_mb", "default_threads"):
        if getattr(target, name) < 1:
            raise TargetFileError(f"target file {path}: '{name}' must be at least 1, got {getattr(target, name)}")
    if target.ram_budget_mb > target.ram_mb:
        raise TargetFileError(f"target file {path}: ram_budget_mb ({target.ram_budget_mb}) exceeds ram_mb "
                              f"({target.ram_mb})")
    if not target.python.count(".") == 1 or not all(p.isdigit() for p in target.python.split(".")):
        raise TargetFileError(f"target file {path}: 'python' must be MAJOR.MINOR, e.g. \"3.11\", "
                              f"got {target.python!r}")


def _estimate(data: object, path: Path) -> Estimate:
    if isinstance(data, dict) and data.get("anchors") == 0:  # `anchors = 0`: no published figure of its own
        data = {k: v for k, v in data.items() if k != "anchors"}
    anchors = data.get("anchors", ()) if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(anchors, list | tuple) or \
            not all(isinstance(a, dict) for a in anchors):
        raise TargetFileError(f"target file {path}: [estimate] must be a table, its anchors [[estimate.anchors]]")
    fields = {f.name for f in dataclasses.fields(Estimate)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise TargetFileError(f"target file {path}: [estimate] has unknown keys: {', '.join(unknown)}")
    values = dict(data)
    anchor_fields = {f.name for f in dataclasses.fields(Anchor)}
    for anchor in values.get("anchors", ()):
        extra = sorted(set(anchor) - anchor_fields)
        if extra:
            raise TargetFileError(f"target file {path}: [[estimate.anchors]] has unknown keys: {', '.join(extra)}")
    try:
        anchors = tuple(Anchor(**{**a, "loo_at_bound": tuple(a.get("loo_at_bound", ()))})
                        for a in values.pop("anchors", ()))
        band = values.pop("error_band", None)
        band = None if band is None else tuple(float(x) for x in band)
        sources = tuple(values.pop("sources", ()))
        at_bound = tuple(values.pop("at_bound", ()))
        figures = Estimate(**values, anchors=anchors, error_band=band, sources=sources,
                           at_bound=at_bound)
    except (TypeError, ValueError) as exc:
        raise TargetFileError(f"target file {path}: bad [estimate] table: {exc}") from None
    for name in ("fp32_gmacs_per_core", "int8_gmacs_per_core", "bandwidth_gbs", "thread_efficiency",
                 "op_overhead_us"):
        value = getattr(figures, name)
        if not _number(value) or value < 0 or (value == 0 and name != "op_overhead_us"):
            raise TargetFileError(f"target file {path}: estimate.{name} must be a positive number, got {value!r}")
    band = figures.error_band
    if figures.thread_efficiency > 1 or (band is not None and (len(band) != 2 or band[0] > band[1])):
        raise TargetFileError(f"target file {path}: estimate.thread_efficiency must be at most 1 and "
                              "error_band two numbers (lowest, highest)")
    if band is not None and not anchors:
        raise TargetFileError(f"target file {path}: an error_band needs the anchors it was measured on "
                              "([[estimate.anchors]]); without any, leave it out: band unknown")
    ratio = figures.ratio_error
    if ratio is not None and (not _number(ratio) or ratio < 0):
        raise TargetFileError(f"target file {path}: estimate.ratio_error must be a number >= 0, got {ratio!r}")
    if not all(_number(a.published_ms) and a.published_ms > 0 and _number(a.estimate_ms)
               and (a.loo_ms is None or _number(a.loo_ms)) for a in anchors):
        raise TargetFileError(f"target file {path}: every anchor needs published_ms > 0 and estimate_ms numbers")
    return figures


def _emulated(data: object, path: Path) -> EmulatedCosts:
    """The [emulated] table: per-class cycles, clock, stall and the measured errors (bench/witness_estimate.py)."""
    if not isinstance(data, dict) or not isinstance(data.get("cycles"), dict):
        raise TargetFileError(f"target file {path}: [emulated] must be a table with a cycles table")
    try:
        band = data.get("error_band")
        costs = EmulatedCosts(**{**data, "cycles": {k: float(v) for k, v in data["cycles"].items()},
                                 "error_band": None if band is None else (float(band[0]), float(band[1]))})
    except (TypeError, ValueError, IndexError) as exc:
        raise TargetFileError(f"target file {path}: bad [emulated] table: {exc}") from None
    figures = [costs.clock_ghz, costs.stall, *costs.cycles.values()]
    if not all(_number(v) and v > 0 for v in figures):
        raise TargetFileError(f"target file {path}: emulated clock_ghz, stall and cycles must be positive numbers")
    return costs


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def _check_types(values: dict[str, object], path: Path) -> None:
    for f in dataclasses.fields(Target):
        expected = int if f.type == "int" else str if f.type == "str" else None
        value = values.get(f.name)
        if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise TargetFileError(f"target file {path}: '{f.name}' must be {expected.__name__}, got {value!r}")
