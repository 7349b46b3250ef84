"""The quantization stage of a build: build the candidates, judge and time them side by side, choose one.

With --quantize auto every candidate of the artifact format is built; a forced mode builds its own
variants only (the float32 baseline is always built and timed: it is what "slower" is measured against).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import analyze
from .candidates import BASELINE, ROUND_MS, Built, Judge, interleaved_latency, plan
from .choose import Choice, Criterion, Row, pick
from .emit import tflite_variants
from .errors import TargetError
from .measure import open_model
from .recipe import Quantize, Recipe
from .stages import Artifacts, Datasets

# Per artifact format: the emitter of its candidates (CANDIDATES lists them) and its static stats.
VARIANT_EMITTERS: dict[str, Callable[..., tuple[list[Built], dict | None]]] = {"tflite": tflite_variants.build}
STATS: dict[str, Callable[[bytes], analyze.GraphStats]] = {"tflite": analyze.tflite_stats,
                                                           "onnx": partial(analyze.stats, "onnx")}
ROUNDS = 7  # candidates are timed in turn, round by round (candidates.interleaved_latency)


@dataclass(frozen=True)
class Selection:
    """The artifacts to ship (chosen model + float32 baseline) and the rows they were chosen from."""

    artifacts: Artifacts
    rows: list[Row]
    choice: Choice
    models: dict[str, bytes]  # every built candidate, by name (the benchmark re-times them)


def select(graph: Any, model_format: str, recipe: Recipe, data: Datasets, threads: int,
           workdir: Path, emitter: Callable[..., tuple[list[Built], dict | None]] | None = None,
           target_problem: Callable[[bytes], str | None] = lambda model: None) -> Selection:
    """Build, judge, time and choose; the choice's manifest block rides along in artifacts.choice.

    emitter: the format's candidate emitter with what it needs beyond the common arguments bound
    (default VARIANT_EMITTERS[model_format]).
    target_problem: why the target's interpreter cannot run a candidate (None: it can); such candidates
    are left out of the choice and listed in the manifest (the float32 baseline stays: it is the yardstick).
    """
    candidates = plan(recipe.quantize, [model_format], calibrated=data.calib is not None)
    labelled = data.evaluation is not None and data.evaluation.labels is not None
    criterion = Criterion(max_drop=recipe.max_drop if labelled else None)
    judge = Judge(graph, data, threads)
    emitter = emitter or VARIANT_EMITTERS[model_format]
    built, diagnosis = emitter(graph, candidates, data.calib, judge, criterion, workdir, recipe.int8_io,
                               str(recipe.calibration))
    ready = {b.candidate.name: b for b in built if b.model is not None}
    refused = {name: why for name, b in ready.items() if name != BASELINE and (why := target_problem(b.model))}
    ready = {name: b for name, b in ready.items() if name not in refused}
    runs = max(1, recipe.bench_runs // ROUNDS)
    rows = _rows(ready, judge, data, runs, threads)
    baseline = next(r for r in rows if r.name == BASELINE)
    eligible = rows if recipe.quantize in (Quantize.auto, Quantize.none) else \
        [r for r in rows if r.name != BASELINE]
    if not eligible and refused:
        raise TargetError(next(iter(refused.values())),
                          "use --quantize auto to pick a variant the target can run, or --force to build it anyway")
    choice = pick(eligible, criterion, baseline)
    chosen = ready[choice.chosen.name]
    section = _section(recipe, criterion, choice, rows, built, diagnosis, chosen, runs, threads)
    if refused:
        section["refused_by_target"] = refused
    stats = STATS[model_format]
    artifacts = Artifacts(model_format, chosen.model, ready[BASELINE].model, stats(chosen.model),
                          stats(ready[BASELINE].model), quantize=chosen.candidate.quantize, choice=section)
    return Selection(artifacts, rows, choice, {name: b.model for name, b in ready.items()})


def _rows(ready: dict[str, Built], judge: Judge, data: Datasets, runs: int, threads: int) -> list[Row]:
    models = {name: open_model(b.candidate.format, b.timed_as or b.model, threads) for name, b in ready.items()}
    latency = interleaved_latency(models, data.golden_set, runs, ROUNDS)
    rows = []
    for name, b in ready.items():
        q = judge(b.candidate.format, b.model)
        rows.append(Row(name, b.candidate.format, str(b.candidate.quantize), len(b.model),
                        latency[name]["p50_ms"], latency[name]["runs"], q.sqnr_db, q.agreement, q.accuracy,
                        q.accuracy_drop, b.details.get("coverage", {}).get("fast_path_pieces"), b.notes))
    return rows


def _section(recipe: Recipe, criterion: Criterion, choice: Choice, rows: list[Row], built: list[Built],
             diagnosis: dict | None, chosen: Built, runs: int, threads: int) -> dict:
    """What the manifest's quantization block adds: the table, the choice and why, how it was measured."""
    return {
        "requested": str(recipe.quantize),
        "variant": chosen.candidate.name,
        "reason": choice.reason,
        "criterion": criterion.describe(),
        "candidates": [dict(r.to_dict(), verdict=choice.verdicts.get(r.name, "baseline (not eligible)"),
                            short=choice.short.get(r.name, "baseline")) for r in rows],
        "not_built": {b.candidate.name: "; ".join(b.notes) for b in built if b.model is None},
        "timing": {"measured_on": "host", "threads": threads, "rounds": ROUNDS,
                   "runs_per_candidate": {r.name: r.runs for r in rows},
                   "method": f"candidates timed in turn, round by round, each for about {ROUND_MS:g} ms "
                             f"(at least {runs} runs) per round; p50 = median of the round p50s"},
        "details": {k: v for k, v in chosen.details.items() if k != "coverage"},
        "coverage": chosen.details.get("coverage"),
        "diagnosis": diagnosis if diagnosis is not None else
        {"of": None, "note": "no int8 candidate was built (mode or missing calibration data)"},
    }
