"""`edgekiln sweep`: the CLI side of compiler/sweep (the base recipe and the axes -> SweepOptions, the front
printed as a table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekiln.compiler.console import console
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.sweep import SweepOptions, run_sweep
from edgekiln.compiler.sweep.points import TEACHER, parse_prunes, parse_students
from edgekiln.compiler.sweep.sweep_json import SweepResult

EXECUTORS = ("local", "ray")
DEFAULT_PRUNES = "0,0.25,0.5"
NO_CHANNEL_PRUNING = "0"  # with --prune-heads / --drop-layers: a point prunes heads or blocks, not channels


@dataclass(frozen=True)
class Grid:
    """The sweep's axes as given: comma-separated texts, None where the flag was left out."""

    prune: str | None = None
    quantize: str | None = None
    formats: str | None = None
    students: str | None = None


def run(base: Recipe, grid: Grid, jobs: int, executor: str, ray_address: str | None, force: bool) -> None:
    """Check the sweep's own options, lay out the grid over `base` (every point's recipe options), run it and
    print its front (DIR/sweep.json holds it)."""
    _check_controls(jobs, executor, ray_address)
    grid = axes_of(base, grid)
    base = base.replace(prune=None, quantize=Quantize.auto, format=None, variant=None, distill=None)  # points set them
    students = parse_students(grid.students or "")
    if students != [TEACHER] and base.train is None:
        raise RecipeError("--distill trains students on training data", "pass --train DATA (labels y help)")
    options = SweepOptions(base, parse_prunes(grid.prune or ""), _variants(grid.quantize or ""),
                           _formats(grid.formats), jobs, executor, ray_address, force, students)
    result = run_sweep(options, lambda line: console.print(line, highlight=False))
    print_front(result, Path(base.output))


def _check_controls(jobs: int, executor: str, ray_address: str | None) -> None:
    if executor not in EXECUTORS:
        raise RecipeError(f"--executor must be local or ray, got '{executor}'")
    if jobs < 1:
        raise RecipeError(f"--jobs must be at least 1, got {jobs}")
    if ray_address is not None and executor != "ray":
        raise RecipeError("--ray-address needs --executor ray")


def _variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    if not variants:
        raise RecipeError("--quantize names no variant", "e.g. --quantize auto or --quantize float32,int8")
    return variants


def _formats(text: str | None) -> list[str] | None:
    """The formats named, or None: every format the target runs."""
    chosen = [f.strip() for f in text.split(",")] if text and text != "auto" else None
    if chosen and not set(chosen) <= {"tflite", "onnx"}:
        raise RecipeError(f"--format takes tflite, onnx or auto, got '{text}'")
    return chosen


def axes_of(base: Recipe, given: Grid) -> Grid:
    """The axes left out, from the recipe (a --recipe file's prune, variant or quantize, format, distill: that one
    value), else the defaults (every prune ratio of DEFAULT_PRUNES, unless heads or blocks are pruned; the model
    itself, no student)."""
    transformer = base.prune_heads is not None or base.drop_layers is not None
    prune = str(base.prune) if base.prune is not None else NO_CHANNEL_PRUNING if transformer else DEFAULT_PRUNES
    quantize = base.variant or ("float32" if base.quantize is Quantize.none else str(base.quantize))
    formats = str(base.format) if base.format is not None else None
    students = str(base.distill) if base.distill is not None else str(TEACHER)
    return Grid(_or(given.prune, prune), _or(given.quantize, quantize), _or(given.formats, formats),
                _or(given.students, students))


def _or(given: str | None, default: str | None) -> str | None:
    return default if given is None else given


def print_front(result: SweepResult, folder: Path) -> None:
    from rich.table import Table

    quality = result["quality"]
    table = Table(title=f"sweep for {result['target']}: latency ({result['evidence']['label']}) x {quality} x size")
    for column in ("point", "p50 ms", "estimate ms", quality, "bytes", "MACs", "front", ""):
        table.add_column(column, justify="left" if column in ("point", "") else "right")
    order = sorted(result["points"], key=lambda r: (not r["on_front"], r.get(result["latency"]) or float("inf")))
    for r in order:
        mark = "chosen" if r["name"] == result["chosen"] else str(r.get("error") or "")
        table.add_row(r["name"], _num(r.get("p50_ms")), _num(r.get("estimate_ms")), _num(r.get(quality)),
                      _num(r.get("bytes")), _num(r.get("macs")), "yes" if r["on_front"] else "", mark)
    console.print(table)
    if result["chosen"]:
        console.print(f"chosen: {result['chosen']} ({result['criterion']}); its bundle: {folder / 'bundle'}; "
                      f"rebuild it: edgekiln build --recipe {folder / 'points' / (result['chosen'] + '.toml')}",
                      highlight=False)
    else:
        console.print(f"no point meets {result['criterion']}: no bundle shipped", highlight=False)


def _num(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)
