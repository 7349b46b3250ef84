"""One sweep, start to finish: plan the points, build the unfinished ones, time all of them side by side
here, mark the front, choose, and write DIR (points/, bundle/, sweep.json, report.html).

DIR layout: points/<name>.toml (the point's recipe), points/<name>.json (its row and key, written when it
finishes), points/<name>/ (its bundle). A rerun reuses every point whose key (source and data sha256 + the
recipe) matches a finished row with its bundle; failed points are tried again.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekiln.compiler import manifest_schema
from edgekiln.compiler.errors import EdgekilnError, RecipeError
from edgekiln.compiler.evaluate.criterion import criterion_for
from edgekiln.compiler.evaluate.timing import ROUNDS
from edgekiln.compiler.recipe import Recipe, check_paths
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import evidence_for
from edgekiln.compiler.sweep import executors, front, points, worker
from edgekiln.compiler.sweep.points import SweepPoint
from edgekiln.compiler.sweep.sweep_json import (
    BuiltRow,
    FailedRow,
    FrontMarks,
    PointAt,
    PointOutcome,
    PointRow,
    PointTiming,
    SavedPoint,
    SweepResult,
    SweepRow,
    failed,
)
from edgekiln.targets import Target

SWEEP_FILE = "sweep.json"
MIN_RUNS = 3  # ROUNDS: as the candidate table is timed (evaluate/timing.py)


@dataclass(frozen=True)
class SweepOptions:
    """base: the recipe every point starts from (its output is DIR). prunes / variants / formats / students: the
    grid (formats None: every format the target runs; students: widths of `build --distill`, points.TEACHER the
    model itself)."""

    base: Recipe
    prunes: list[float | str]
    variants: list[str]
    formats: list[str] | None = None
    jobs: int = 1
    executor: str = "local"
    ray_address: str | None = None
    force: bool = False
    students: list[float | str] = field(default_factory=lambda: [points.TEACHER])


BAR = 20  # characters of the progress bar


@dataclass
class Progress:
    """Done / running / failed over the points, with elapsed time and an estimate of what is left."""

    total: int
    say: Callable[[str], None]
    done: int = 0
    failed: int = 0
    running: set[str] = field(default_factory=set)
    start: float = field(default_factory=time.monotonic)

    def started(self, name: str) -> None:
        self.running.add(name)

    def finished(self, name: str, ok: bool) -> None:
        self.running.discard(name)
        self.done += 1
        self.failed += 0 if ok else 1
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * (self.total - self.done)
        filled = round(BAR * self.done / max(self.total, 1))
        self.say(f"|{'#' * filled}{'.' * (BAR - filled)}| {self.done}/{self.total} done, {len(self.running)} running, "
                 f"{self.failed} failed, "
                 f"{elapsed:.0f} s elapsed, ~{left:.0f} s left: {name} {'built' if ok else 'failed'}")


def run_sweep(options: SweepOptions, say: Callable[[str], None] = lambda line: None) -> SweepResult:
    """Build, time and rank every point; returns what DIR/sweep.json holds."""
    from edgekiln.compiler.pipeline import resolve_target
    from edgekiln.compiler.search import formats as format_search

    base, folder = options.base, Path(options.base.output)
    check_paths(base)
    target = resolve_target(base.target)
    model_formats = options.formats or list(format_search.resolve(base.replace(format="auto"), target).build)
    grid = points.plan(options.prunes, options.variants, model_formats, options.students)
    recipes = {p.name: p.recipe(base) for p in grid}  # a point the recipe refuses is refused before DIR is touched
    _check_folder(folder, options.force)
    (folder / "points").mkdir(parents=True, exist_ok=True)
    for name, recipe in recipes.items():
        _atomic_text(folder / "points" / f"{name}.toml", points.to_toml(recipe))
    keys = {name: points.key(recipe) for name, recipe in recipes.items()}
    rows: dict[str, PointOutcome] = {name: row for name in recipes if (row := _finished(folder, name, keys[name]))}
    todo = [(name, recipes[name].to_dict()) for name in recipes if name not in rows]
    say(f"{len(grid)} points ({len(rows)} already built in {folder}), {len(todo)} to build with "
        f"{_engine(options)}")
    progress = Progress(len(todo), say)

    def done(name: str, result: worker.PointResult) -> None:
        rows[name] = _save(folder, name, keys[name], result)
        progress.finished(name, not failed(result.row))

    executors.run(todo, options.jobs, options.executor, options.ray_address, progress.started, done)
    return _conclude(folder, options, grid, rows, target, built_now=[name for name, _ in todo], say=say)


def _engine(options: SweepOptions) -> str:
    if options.executor == "ray":
        return f"Ray ({options.ray_address or 'local'})"
    return "this process" if options.jobs == 1 else f"a pool of {options.jobs} processes"


def _check_folder(folder: Path, force: bool) -> None:
    """DIR is new, or a sweep folder (resumed), or replaced with --force; never a stranger's folder."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RecipeError(f"{folder} exists and is not a folder", "pass -o NEW_FOLDER")
    if force:
        shutil.rmtree(folder)
    elif any(folder.iterdir()) and not (folder / "points").is_dir():
        raise RecipeError(f"{folder} exists and is not a sweep folder", "pass -o NEW_FOLDER, or --force to replace it")


def _finished(folder: Path, name: str, key: str) -> PointRow | None:
    """The saved row of a point built with this very key, when its bundle is there; else None."""
    try:
        saved: SavedPoint = json.loads((folder / "points" / f"{name}.json").read_text())  # as _save wrote it
        manifest = manifest_schema.read(folder / "points" / name)
    except (OSError, ValueError, EdgekilnError):  # not finished, or left half-written: build it again
        return None
    row = saved.get("row")
    if row is None or failed(row) or saved.get("key") != key or manifest["model"]["sha256"] != row.get("sha256"):
        return None
    return row


def _save(folder: Path, name: str, key: str, result: worker.PointResult) -> PointOutcome:
    """The point's bundle (replacing a stale one) and then its row: the row is the mark of a finished point."""
    if result.bundle_tar is not None:
        bundle, staging = folder / "points" / name, folder / "points" / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        worker.untar(result.bundle_tar, staging)
        shutil.rmtree(bundle, ignore_errors=True)
        staging.rename(bundle)
    saved: SavedPoint = {"key": key, "row": result.row}
    _atomic_text(folder / "points" / f"{name}.json", json.dumps(saved, indent=1))
    return result.row


def _conclude(folder: Path, options: SweepOptions, grid: list[SweepPoint], rows: dict[str, PointOutcome],
              target: Target, built_now: list[str], say: Callable[[str], None]) -> SweepResult:
    built = {name: row for name, row in rows.items() if not failed(row)}
    ok = [p for p in grid if p.name in built]
    say(f"timing {len(ok)} points side by side on this host ({ROUNDS} interleaved rounds)")
    threads = options.base.threads or target.default_threads  # --threads, as every build's host timing
    timings = _time(folder, [p.name for p in ok], threads)
    labelled = any(row.get("accuracy") is not None for row in built.values())
    criterion = criterion_for(options.base, labelled)
    candidates = [Candidate.from_row({**_at(p), **built[p.name], **timings[p.name]}) for p in ok]
    evidence = evidence_for([c.timings for c in candidates], target.name, target.arch, platform.machine(),
                            target.estimate is not None,
                            target.estimate.ratio_error if target.estimate else None)
    latency = {"host": "p50_ms", "estimate": "estimate_ms", "device": "p50_ms"}[evidence.kind]
    axes = front.Axes(criterion, labelled, evidence)
    on_front, chosen = front.front(candidates, axes), front.choose(candidates, axes)
    within = {c.name for c in candidates if axes.within_budget(c)}
    table = [_sweep_row(p, rows[p.name], timings, {"on_front": p.name in on_front, "within_budget": p.name in within})
             for p in grid]
    result: SweepResult = {
        "target": target.name, "max_drop": options.base.max_drop if labelled else None,
        "quality": front.quality_key(labelled, criterion), "latency": latency, "evidence": evidence.to_dict(),
        "criterion": criterion.describe(),
        "timing": {"measured_on": "host", "machine": platform.machine(), "rounds": ROUNDS, "threads": threads,
                   "note": "every point timed here, side by side, in one process"},
        "points": table, "front": sorted(on_front), "chosen": chosen.name if chosen else None,
        "built_now": built_now, "reused": [p.name for p in grid if p.name not in built_now]}
    _ship(folder, chosen.name if chosen else None)
    _atomic_text(folder / SWEEP_FILE, json.dumps(result, indent=1, allow_nan=False, default=_json_default))
    _report(folder, say)
    return result


def _at(p: SweepPoint) -> PointAt:
    return {"name": p.name, "prune": p.prune, "format": p.format, "quantize": p.variant, "student": p.student,
            "recipe": f"points/{p.name}.toml"}


def _sweep_row(p: SweepPoint, outcome: PointOutcome, timings: dict[str, PointTiming], marks: FrontMarks) -> SweepRow:
    """The point in sweep.json: where it sits, what its manifest measured and its timing here (or why it was not
    built), and its marks."""
    if failed(outcome):
        failure: FailedRow = {**_at(p), **outcome, **marks}
        return failure
    row: BuiltRow = {**_at(p), **outcome, **timings[p.name], **marks}
    return row


def _time(folder: Path, names: list[str], threads: int) -> dict[str, PointTiming]:
    """Every built point's model, loaded through the bundle runtime, timed in interleaved rounds."""
    from edgekiln import runtime
    from edgekiln.compiler.evaluate.timing import interleaved_feeds
    from edgekiln.compiler.tf_env import quiet_fds

    if not names:
        return {}
    with quiet_fds():
        models = {name: runtime.load(folder / "points" / name, threads=threads) for name in names}
    feeds = {name: model.raw_feeds(None) for name, model in models.items()}
    timed = interleaved_feeds(models, feeds, MIN_RUNS, ROUNDS)
    return {name: {"p50_ms": t["p50_ms"], "timed_runs": t["runs"]} for name, t in timed.items()}


def _ship(folder: Path, chosen: str | None) -> None:
    """DIR/bundle: a copy of the chosen point's bundle (replaced atomically); none when nothing is within."""
    bundle = folder / "bundle"
    if chosen is None:
        shutil.rmtree(bundle, ignore_errors=True)
        return
    staging = folder / ".bundle.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(folder / "points" / chosen, staging)
    shutil.rmtree(bundle, ignore_errors=True)
    staging.rename(bundle)


def _report(folder: Path, say: Callable[[str], None]) -> None:
    from edgekiln.compiler import report

    path = report.write(folder)
    say(f"report: {path}")


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    return str(value)
