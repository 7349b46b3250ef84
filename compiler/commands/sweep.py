"""`edgekiln sweep`: the CLI side of compiler/sweep (flags -> SweepOptions, the front printed as a table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekiln.compiler.console import console
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.sweep import SweepOptions, run_sweep
from edgekiln.compiler.sweep.points import parse_prunes

EXECUTORS = ("local", "ray")


def run(recipe: dict[str, Any], prune: str, quantize: str, formats: str | None, jobs: int, executor: str,
        ray_address: str | None, force: bool) -> dict:
    if executor not in EXECUTORS:
        raise RecipeError(f"--executor must be local or ray, got '{executor}'")
    if jobs < 1:
        raise RecipeError(f"--jobs must be at least 1, got {jobs}")
    if ray_address is not None and executor != "ray":
        raise RecipeError("--ray-address needs --executor ray")
    variants = [v.strip() for v in quantize.split(",") if v.strip()]
    if not variants:
        raise RecipeError("--quantize names no variant", "e.g. --quantize auto or --quantize float32,int8")
    chosen_formats = [f.strip() for f in formats.split(",")] if formats and formats != "auto" else None
    if chosen_formats and not set(chosen_formats) <= {"tflite", "onnx"}:
        raise RecipeError(f"--format takes tflite, onnx or auto, got '{formats}'")
    options = SweepOptions(Recipe(**recipe), parse_prunes(prune), variants, chosen_formats, jobs, executor,
                           ray_address, force)
    result = run_sweep(options, lambda line: console.print(line, highlight=False))
    print_front(result, Path(recipe["output"]))
    return result


def print_front(result: dict, folder: Path) -> None:
    from rich.table import Table

    quality = result["quality"]
    table = Table(title=f"sweep for {result['target']}: latency ({result['evidence']['label']}) x {quality} x size")
    for column in ("point", "p50 ms", "estimate ms", quality, "bytes", "MACs", "front", ""):
        table.add_column(column, justify="left" if column in ("point", "") else "right")
    order = sorted(result["points"], key=lambda r: (not r["on_front"], r.get(result["latency"]) or float("inf")))
    for r in order:
        mark = "chosen" if r["name"] == result["chosen"] else (r.get("error") or "")
        table.add_row(r["name"], _num(r.get("p50_ms")), _num(r.get("estimate_ms")), _num(r.get(quality)),
                      _num(r.get("bytes")), _num(r.get("macs")), "yes" if r["on_front"] else "", mark)
    console.print(table)
    if result["chosen"]:
        console.print(f"chosen: {result['chosen']} ({result['criterion']}); its bundle: {folder / 'bundle'}; "
                      f"rebuild it: edgekiln build --recipe {folder / 'points' / (result['chosen'] + '.toml')}",
                      highlight=False)
    else:
        console.print(f"no point meets {result['criterion']}: no bundle shipped", highlight=False)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)
