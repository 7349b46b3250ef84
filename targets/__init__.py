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
_NOT_TARGETS = {"wheels"}  # data files in this folder that describe no device


class TargetFileError(ValueError):
    """A target name or file that cannot be used (the compiler wraps it in its own error)."""


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

    def to_dict(self) -> dict[str, object]:
        """Plain dict for the manifest."""
        data = dataclasses.asdict(self)
        data["sources"] = list(self.sources)
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
    except tomllib.TOMLDecodeError as exc:
        raise TargetFileError(f"target file {path} is not valid TOML: {exc}") from exc
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
    values["sources"] = tuple(values.get("sources", ()))  # type: ignore[arg-type]
    _check_types(values, path)
    return Target(**values)  # type: ignore[arg-type]


def _check_types(values: dict[str, object], path: Path) -> None:
    for f in dataclasses.fields(Target):
        expected = int if f.type == "int" else str if f.type == "str" else None
        value = values.get(f.name)
        if expected is not None and not isinstance(value, expected):
            raise TargetFileError(f"target file {path}: '{f.name}' must be {expected.__name__}, got {value!r}")
