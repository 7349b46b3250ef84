"""Will this bundle run on the target? Wheels for its arch/Python/glibc, op versions, and RAM.

The facts live in data (targets/*.toml, targets/wheels.toml, targets/op_versions.toml,
targets/locks.toml, targets/runtime_memory.toml); this module only compares. A failed check is a TargetError naming the
limit and what to do; with --force it becomes a warning in the manifest instead.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict, TypeVar

import numpy as np

from edgekiln import targets as target_data
from edgekiln.compiler.errors import TargetError
from edgekiln.compiler.manifest_schema import MemoryBasis, Provenance, provenance
from edgekiln.targets import Target

T = TypeVar("T")


class Wheels(TypedDict):
    """targets/wheels.toml, per pin: the CPython versions with a wheel, the oldest glibc per machine, and the
    apt package that provides it where PyPI has no wheel."""

    python: list[str]
    glibc: dict[str, str]
    apt: NotRequired[dict[str, str]]


class Lock(TypedDict):
    """targets/locks.toml, per lock_key: the exact requirements an emulated validation passed with."""

    requirements: list[str]
    validated: str


class OpVersions(TypedDict):
    """targets/op_versions.toml, per interpreter pin: the highest version of each builtin op it loads."""

    probed_with: str
    max_version: dict[str, int]


class ContribOps(TypedDict):
    """targets/onnx_contrib_ops.toml, per onnxruntime pin: the com.microsoft ops it has a CPU kernel for."""

    probed_with: str
    contrib_ops: list[str]


@dataclass(frozen=True)
class Tables:
    """The target facts this module compares with (targets/*.toml; a missing file is an empty table), by pin;
    runtime_base_mb by package name (runtime_memory.toml)."""

    wheels: dict[str, Wheels]
    locks: dict[str, Lock]
    op_versions: dict[str, OpVersions]
    onnx_contrib_ops: dict[str, ContribOps]
    runtime_base_mb: dict[str, float]


def interpreter_pin(target: Target, model_format: str) -> str:
    """The interpreter package==version the bundle pins for this format on this target."""
    return target.tflite_interpreter if model_format == "tflite" else target.onnx_interpreter


def base_pins(target: Target, model_format: str) -> list[str]:
    """The two packages a bundle needs: numpy and the interpreter, as the target pins them."""
    return [target.numpy, interpreter_pin(target, model_format)]


def lock_key(target: Target, model_format: str) -> str:
    """The targets/locks.toml section for this target's pins, arch and Python."""
    return f"{' '.join(base_pins(target, model_format))} {target.arch} cp{target.python.replace('.', '')}"


def requirements(target: Target, model_format: str) -> list[str]:
    """The bundle's requirements.txt lines: the exact set an emulated validation installed and passed
    with (targets/locks.toml), else the base pins. Pins apt provides carry a comment saying so."""
    lock = _tables().locks.get(lock_key(target, model_format))
    pins = list(lock["requirements"]) if lock else base_pins(target, model_format)
    return [_with_apt_note(pin, target) for pin in pins]


def _with_apt_note(pin: str, target: Target) -> str:
    """A pin the target's OS provides through apt (numpy on 32-bit Pi OS) says so: pip would find no wheel."""
    wheels = _tables().wheels.get(pin)
    apt_package = wheels.get("apt", {}).get(target.arch) if wheels else None
    if apt_package and apt_package in target.apt_packages:
        return f"{pin}  # from apt: {apt_package} (PyPI has no {target.arch} wheel)"
    return pin


@functools.cache
def _tables() -> Tables:
    folder = Path(target_data.__file__).parent
    read = {name: tomllib.loads(path.read_text()) if (path := folder / f"{name}.toml").is_file() else {}
            for name in ("wheels", "locks", "op_versions", "onnx_contrib_ops", "runtime_memory")}
    return Tables(wheels=read["wheels"], locks=read["locks"], op_versions=read["op_versions"],
                  onnx_contrib_ops=read["onnx_contrib_ops"],
                  runtime_base_mb=read["runtime_memory"].get("runtime_base_mb", {}))


def enforce(check: Callable[[], T], force: bool, notes: list[str]) -> T | None:
    """Run a check; with force a refusal becomes a note (for the manifest's warnings) instead."""
    try:
        return check()
    except TargetError as exc:
        if not force:
            raise
        notes.append(f"--force: built despite: {exc.message}")
        return None


@dataclass(frozen=True)
class PeakMemory:
    """The estimated peak memory on the target, in MB; unknown: activation tensors whose shapes are unknown and
    why (the figure then sums the known ones: a lower bound, not the upper bound it is otherwise)."""

    mb: float
    unknown: str | None = None


def check_target(target: Target, model_format: str, model_bytes: bytes, force: bool,
                 notes: list[str]) -> PeakMemory:
    """The checks that need the compiled model: op versions, then RAM. Returns the estimated peak memory; when it
    is only a lower bound the check could pass wrongly, and a note says so."""
    enforce(lambda: check_ops(target, model_format, model_bytes), force, notes)
    arena, unknown = arena_bytes(model_format, model_bytes)
    enforce(lambda: check_memory(target, len(model_bytes), arena, model_format), force, notes)
    peak = PeakMemory(memory_mb(len(model_bytes), arena, runtime_base(target, model_format)[1]), unknown)
    if unknown:
        notes.append(f"the RAM check passed on a lower bound ({peak.mb:.0f} MB of {target.ram_budget_mb} MB): "
                     f"{unknown}")
    return peak


def check_wheels(target: Target, model_format: str) -> None:
    """Refuse a target for which some pinned package has no wheel (nor an apt package that provides it)."""
    problem = wheel_problem(target, model_format)
    if problem:
        raise TargetError(problem, _alternatives(target, model_format))


def wheel_problem(target: Target, model_format: str) -> str | None:
    """Why this format's pins cannot be installed on the target, or None when they can."""
    for pin in reversed(base_pins(target, model_format)):  # the interpreter first: it matters most
        problem = pin_problem(target, pin)
        if problem:
            return problem
    return None


def pin_problem(target: Target, pin: str) -> str | None:
    """Why one pinned package cannot be installed on the target (targets/wheels.toml), or None when it can."""
    facts = _tables().wheels.get(pin)
    if facts is None:
        return f"edgekiln knows no wheels for {pin} (target {target.name}; add it to targets/wheels.toml)"
    if facts.get("apt", {}).get(target.arch) in target.apt_packages:
        return None
    oldest_glibc = facts["glibc"].get(target.arch)
    if target.python not in facts["python"] or oldest_glibc is None or \
            _version(target.glibc) < _version(oldest_glibc):
        return (f"{pin} has no wheel for {target.arch} / Python {target.python} / glibc {target.glibc} "
                f"(target {target.name}); wheels exist for Python {', '.join(facts['python'])} on "
                f"{', '.join(sorted(facts['glibc']))}")
    return None


def run_problem(target: Target, model_format: str) -> Callable[[bytes], str | None]:
    """Why the target cannot run a candidate model (op versions, then RAM with that format's interpreter),
    as a predicate for the candidate search: the refusal's message, or None."""
    def problem(model_bytes: bytes) -> str | None:
        try:
            check_ops(target, model_format, model_bytes)
            check_memory(target, len(model_bytes), arena_bytes(model_format, model_bytes)[0], model_format)
        except TargetError as exc:
            return exc.message
        return None

    return problem


def check_ops(target: Target, model_format: str, model_bytes: bytes) -> None:
    """Refuse a model whose (op, version) pairs the target's interpreter cannot load (op_versions.toml), or
    whose com.microsoft ops its onnxruntime has no CPU kernel for (onnx_contrib_ops.toml)."""
    if model_format == "onnx":
        check_contrib_ops(target, model_bytes)
        return
    from edgekiln.compiler.analyze.tflite_stats import opcode_versions

    pin = interpreter_pin(target, model_format)
    table = _tables().op_versions.get(pin)
    if table is None:
        return  # no probe of this interpreter: the emulated validation is the check
    highest = table["max_version"]
    missing = [f"{op} version {version} ({'absent' if op not in highest else f'it has up to {highest[op]}'})"
               for op, version in opcode_versions(model_bytes) if highest.get(op, 0) < version]
    if missing:
        raise TargetError(f"{pin}, the interpreter of {target.name}, cannot load this model: {'; '.join(missing)}",
                          _alternatives(target, model_format))


def check_contrib_ops(target: Target, model_bytes: bytes) -> None:
    """Refuse an ONNX model with a contrib op (the fused candidates' Attention, SkipLayerNormalization, ...)
    that the target's pinned onnxruntime has no CPU kernel for; an unprobed pin: the emulated validation checks."""
    if b"com.microsoft" not in model_bytes:  # no contrib op: nothing to parse
        return
    pin = interpreter_pin(target, "onnx")
    known = _tables().onnx_contrib_ops.get(pin)
    if known is None:
        return
    import onnx

    used = {n.op_type for n in onnx.load_from_string(model_bytes).graph.node if n.domain == "com.microsoft"}
    missing = sorted(used - set(known["contrib_ops"]))
    if missing:
        raise TargetError(f"{pin}, the interpreter of {target.name}, has no CPU kernel for the com.microsoft "
                          f"op(s) {', '.join(missing)}", _alternatives(target, "onnx"))


def _alternatives(target: Target, model_format: str) -> str:
    """What the user can do instead: the same device with another OS, another format, or --force."""
    options = []
    if target.arch == "armv7l":
        options.append("install 64-bit Raspberry Pi OS and use its --target (e.g. rpi3), which runs LiteRT")
    else:
        options.append("pick another --target")
    other = "onnx" if model_format == "tflite" else "tflite"
    if wheel_problem(target, other) is None:
        options.append(f"or --format {other}")
    return "; ".join([*options, "--force builds it anyway"])


def runtime_base(target: Target, model_format: str) -> tuple[str, float]:
    """(interpreter pin, MB): peak RSS of the device's process before the model, for this format's
    interpreter on the target (targets/runtime_memory.toml, keyed by package name).

    An interpreter not measured there gets the largest measured base: overestimating refuses a
    borderline bundle, which --force overrides; underestimating would let one die on the device."""
    pin = interpreter_pin(target, model_format)
    bases = _tables().runtime_base_mb
    return pin, float(bases.get(package_name(pin), max(bases.values())))


def package_name(pin: str) -> str:
    """The normalised distribution name of a `name==version` pin (PEP 503: lower case, runs of -_. as -)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[=<>!~;\[ ]", pin.strip(), maxsplit=1)[0]).lower()





def memory_basis(target: Target, model_format: str) -> MemoryBasis:
    """What the manifest's memory estimate rests on: the interpreter and its measured (or fallback) base."""
    pin, base = runtime_base(target, model_format)
    measured = package_name(pin) in _tables().runtime_base_mb
    return {"runtime_base_mb": base, "runtime_interpreter": pin,
            "runtime_base_source": "targets/runtime_memory.toml" if measured else
            f"not measured for {package_name(pin)}: the largest base in targets/runtime_memory.toml"}


def memory_how(peak: PeakMemory) -> Provenance:
    """How the manifest's memory figure was made: an estimate, an upper bound unless some shapes are unknown."""
    return provenance("estimate", "runtime base (targets/runtime_memory.toml) + model bytes + every activation "
                      "tensor at batch 1 (an upper bound: no arena reuse)", unknown=peak.unknown and
                      f"{peak.unknown}; the figure sums the known tensors: a lower bound")


def memory_mb(model_bytes: int, arena_bytes: int, base_mb: float) -> float:
    """Estimated peak memory in MB of the device's process: runtime base + model + activations."""
    return base_mb + (model_bytes + arena_bytes) / 2**20


def check_memory(target: Target, model_bytes: int, arena_bytes: int, model_format: str = "tflite") -> float:
    """Estimated peak memory in MB (model + activations + the format's runtime); refuse beyond the budget (also
    when the activations are a lower bound: the bundle needs at least that)."""
    pin, base_mb = runtime_base(target, model_format)
    needed_mb = memory_mb(model_bytes, arena_bytes, base_mb)
    if needed_mb > target.ram_budget_mb:
        raise TargetError(
            f"the bundle needs about {needed_mb:.0f} MB (model {model_bytes / 2**20:.1f} MB, activations "
            f"{arena_bytes / 2**20:.1f} MB, runtime {base_mb:.0f} MB with {pin}) but {target.name} has a "
            f"budget of {target.ram_budget_mb} MB",
            "prune or quantize further, or pick a --target with more RAM",
        )
    return needed_mb


def arena_bytes(model_format: str, model_bytes: bytes) -> tuple[int, str | None]:
    """Activation-memory upper bound of an artifact of either format, and what of it is unknown and why (a .tflite
    model's shapes are all in the file: None)."""
    if model_format == "onnx":
        from edgekiln.compiler.analyze.onnx_stats import onnx_arena_bytes

        return onnx_arena_bytes(model_bytes)
    return tflite_arena_bytes(model_bytes), None


def tflite_arena_bytes(model_bytes: bytes) -> int:
    """Upper bound of the activation memory: the bytes of every non-constant tensor at batch 1."""
    from edgekiln.compiler.analyze.tflite_stats import open_litert

    interp = open_litert(model_bytes)
    ops = interp._get_ops_details()  # noqa: SLF001
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interp.get_input_details()}
    return int(sum(np.prod(t["shape"]) * np.dtype(t["dtype"]).itemsize
                   for t in interp.get_tensor_details() if t["index"] in produced))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))
