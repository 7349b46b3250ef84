"""Which artifact formats a build compares: the one asked for, or every format the target can run.

`--format tflite|onnx` builds that format. `--format auto` (and, with `--quantize auto`, no --format) builds
the candidates of every format whose interpreter wheel exists for the target, judges and times them in one
table (search/select.py), and ships the measured best: TFLite vs ONNX is a measurement, not a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgekiln.compiler.device import compat
from edgekiln.compiler.recipe import ARTIFACT_FORMATS, Format, Quantize, Recipe
from edgekiln.targets import Target


@dataclass(frozen=True)
class Formats:
    """The formats to build, the target's default first, and why any other was left out."""

    build: tuple[str, ...]
    left_out: dict[str, str] = field(default_factory=dict)


def resolve(recipe: Recipe, target: Target) -> Formats:
    """The artifact formats of this build (a format the target cannot run is checked later and refused)."""
    asked = recipe.format if recipe.format is not None else \
        (Format.auto if recipe.quantize is Quantize.auto else Format(target.default_format))
    if asked is not Format.auto:
        return Formats((str(asked),))
    ordered = [target.default_format, *(str(f) for f in ARTIFACT_FORMATS if str(f) != target.default_format)]
    problems = {f: compat.wheel_problem(target, f) for f in ordered}
    runnable = tuple(f for f in ordered if problems[f] is None)
    if not runnable:  # nothing runs: the default format's check refuses it with its hint (or --force)
        return Formats((target.default_format,))
    return Formats(runnable, {f: why for f, why in problems.items() if why is not None})
