"""The points of a sweep: what each is, its name, its recipe file, and the key that says it is finished."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.manifest import file_facts
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search.variants import VARIANTS

# --quantize auto: one point per storage mode. The int8 refinements are points when named explicitly.
AUTO_VARIANTS = {"tflite": ("float32", "float16", "dynamic", "int8"), "onnx": ("float32", "dynamic", "int8")}
NOT_IN_KEY = ("output", "force")  # where a point is written does not change what it is
FILE_KEYS = ("source", "calib", "eval", "train", "tokenizer")  # recipe keys naming a file a point reads


TEACHER = 1.0  # the student axis' width of the model itself: no distillation


@dataclass(frozen=True)
class SweepPoint:
    """One sweep point: a prune setting (0: unpruned; or "auto"), a format, the one variant it ships, and a student
    width (TEACHER: the model itself; or "auto": `build --distill auto`)."""

    prune: float | str
    format: str
    variant: str
    student: float | str = TEACHER

    @property
    def name(self) -> str:
        """p<prune %>-<format>-<variant>, then -s<width %> for a student (the model's own points keep their names)."""
        prune = "auto" if self.prune == "auto" else f"{round(float(self.prune) * 100):02d}"
        student = "" if self.student == TEACHER else \
            "-sauto" if self.student == "auto" else f"-s{round(float(self.student) * 100):02d}"
        return f"p{prune}-{self.format}-{self.variant}{student}"

    def recipe(self, base: Recipe) -> Recipe:
        """The point as a build recipe: `build --recipe points/<name>.toml` remakes exactly this point."""
        prune = None if self.prune == 0 else self.prune
        distill = None if self.student == TEACHER else self.student
        return base.replace(prune=prune, format=self.format, quantize="auto", variant=self.variant,
                            distill=distill, **_absolute(base))


def _absolute(base: Recipe) -> dict[str, str]:
    """The recipe's files as absolute paths: a point's recipe builds the same point from any directory."""
    return {k: str(Path(v).resolve()) for k, v in _files(base).items()}


def _files(recipe: Recipe) -> dict[str, str]:
    """The files a recipe reads, by key: the model, the data, the tokenizer, and a target given as a TOML file."""
    files = {k: v for k in FILE_KEYS if (v := getattr(recipe, k))}
    if Path(recipe.target).suffix == ".toml":  # else a shipped target's name (targets.load)
        files["target"] = recipe.target
    return files


def plan(prunes: list[float | str], variants: list[str], formats: list[str],
         students: list[float | str] | None = None) -> list[SweepPoint]:
    """Every student width x prune setting x format x variant the format has ("auto": AUTO_VARIANTS)."""
    points = []
    for fmt in formats:
        names = {c.name for c in VARIANTS[fmt]}
        wanted = [v for given in variants for v in (AUTO_VARIANTS[fmt] if given == "auto" else (given,))]
        unknown = [v for v in wanted if v not in names]
        if unknown and len(formats) == 1:
            raise RecipeError(f"{fmt} has no variant {', '.join(unknown)}", f"its variants: {', '.join(sorted(names))}")
        points += [SweepPoint(p, fmt, v, s) for s in students or [TEACHER] for p in prunes
                   for v in dict.fromkeys(wanted) if v in names]
    return points


def parse_students(text: str) -> list[float | str]:
    """'1,0.5,auto' -> [1.0, 0.5, 'auto']: student widths in (0, 1] (1: the model itself) and 'auto'."""
    values: list[float | str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            width: float | str = item if item == "auto" else float(item)
        except ValueError:
            raise RecipeError(f"--distill takes student widths and 'auto', got '{item}'",
                              "e.g. --distill 1,0.5,auto (1: the model itself)") from None
        if width != "auto" and not (isinstance(width, float) and math.isfinite(width) and 0 < width <= 1):
            raise RecipeError(f"--distill widths are in (0, 1], got {item}", "e.g. --distill 1,0.5,auto")
        values.append(width)
    if not values:
        raise RecipeError("--distill names no width", "e.g. --distill 1,0.5,auto")
    return list(dict.fromkeys(values))


def parse_prunes(text: str) -> list[float | str]:
    """'0,0.25,0.5,auto' -> [0.0, 0.25, 0.5, 'auto']."""
    values: list[float | str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "auto":
            values.append(item)
            continue
        try:
            ratio = float(item)
        except ValueError:
            raise RecipeError(f"--prune takes ratios and 'auto', got '{item}'", "e.g. --prune 0,0.25,0.5,auto") \
                from None
        if not (math.isfinite(ratio) and 0 <= ratio < 1):
            raise RecipeError(f"--prune ratios are in [0, 1), got {item}", "e.g. --prune 0,0.25,0.5")
        values.append(ratio)
    if not values:
        raise RecipeError("--prune names no setting", "e.g. --prune 0,0.25,0.5")
    return list(dict.fromkeys(values))


def key(recipe: Recipe) -> str:
    """What makes a point the same point: the bytes of the files it reads and every recipe value that shapes it."""
    data = {k: v for k, v in recipe.to_dict().items() if k not in NOT_IN_KEY}
    digests = {k: file_facts(Path(p))[1] for k, p in _files(recipe).items()}
    return hashlib.sha256(json.dumps([data, digests], sort_keys=True, default=str).encode()).hexdigest()


def to_toml(recipe: Recipe) -> str:
    """The recipe as TOML (from_toml reads it back), without output/force: the user says where to build."""
    lines = []
    for name, value in recipe.to_dict().items():
        if name in NOT_IN_KEY or value is None:
            continue
        if isinstance(value, dict):  # input_shape {name = [dims]}
            inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
            lines.append(f"{name} = {{{inner}}}")
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string
