"""Will this bundle run on the target? Wheels for its arch/Python/glibc, and RAM.

The facts live in data (targets/*.toml, targets/wheels.toml); this module only compares.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

import targets as target_data
from targets import Target

from .errors import TargetError
from .tf_env import quiet_fds

# Peak RSS of `python -c "import numpy; from ai_edge_litert.interpreter import Interpreter"`,
# measured on the build host (36 MB); the device's process starts at about this size.
RUNTIME_BASE_MB = 36.0


def interpreter_pin(target: Target, model_format: str) -> str:
    """The interpreter package==version the bundle pins for this format on this target."""
    return target.tflite_interpreter if model_format == "tflite" else target.onnx_interpreter


def requirements(target: Target, model_format: str) -> list[str]:
    """The bundle's requirements.txt lines."""
    return [target.numpy, interpreter_pin(target, model_format)]


def check_wheels(target: Target, model_format: str) -> None:
    """Refuse a target for which some pinned package has no wheel."""
    table = tomllib.loads((Path(target_data.__file__).parent / "wheels.toml").read_text())
    for pin in requirements(target, model_format):
        facts = table.get(pin)
        if facts is None:
            raise TargetError(f"edgekiln knows no wheels for {pin} (target {target.name})",
                              "add it to targets/wheels.toml after checking PyPI")
        oldest_glibc = facts["glibc"].get(target.arch)
        if target.python not in facts["python"] or oldest_glibc is None or \
                _version(target.glibc) < _version(oldest_glibc):
            raise TargetError(
                f"{pin} has no wheel for {target.arch} / Python {target.python} / glibc {target.glibc} "
                f"(target {target.name}); wheels exist for Python {', '.join(facts['python'])} on "
                f"{', '.join(sorted(facts['glibc']))}",
                "pick another --target, or describe a device with a newer Python in a target TOML file",
            )


def check_memory(target: Target, model_bytes: int, arena_bytes: int) -> float:
    """Estimated peak memory in MB (model + activations + runtime); refuse beyond the target's budget."""
    needed_mb = RUNTIME_BASE_MB + (model_bytes + arena_bytes) / 2**20
    if needed_mb > target.ram_budget_mb:
        raise TargetError(
            f"the bundle needs about {needed_mb:.0f} MB (model {model_bytes / 2**20:.1f} MB, activations "
            f"{arena_bytes / 2**20:.1f} MB, runtime {RUNTIME_BASE_MB:.0f} MB) but {target.name} has a budget "
            f"of {target.ram_budget_mb} MB",
            "prune or quantize further, or pick a --target with more RAM",
        )
    return needed_mb


def arena_bytes(model_format: str, model_bytes: bytes) -> int:
    """Activation-memory upper bound of an artifact of either format."""
    if model_format == "onnx":
        from .analyze_onnx import onnx_arena_bytes

        return onnx_arena_bytes(model_bytes)
    return tflite_arena_bytes(model_bytes)


def tflite_arena_bytes(model_bytes: bytes) -> int:
    """Upper bound of the activation memory: the bytes of every non-constant tensor at batch 1."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():
        interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    ops = interp._get_ops_details()  # noqa: SLF001
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interp.get_input_details()}
    return int(sum(np.prod(t["shape"]) * np.dtype(t["dtype"]).itemsize
                   for t in interp.get_tensor_details() if t["index"] in produced))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))
