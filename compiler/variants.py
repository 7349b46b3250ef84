"""The quantization stage of a build: build the candidates, judge and time them side by side, choose one.

With --quantize auto every candidate of each artifact format is built; a forced mode builds its own
variants only (the float32 baseline is always built and timed: it is what "slower" is measured against).
With --format auto (compiler/formats.py) the candidates of every format the target runs share one table.
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
from .errors import EdgekilnError, TargetError
from .measure import open_model
from .recipe import Quantize, Recipe
from .stages import Artifacts, Datasets

STATS: dict[str, Callable[[bytes], analyze.GraphStats]] = {"tflite": analyze.tflite_stats,
                                                           "onnx": partial(analyze.stats, "onnx")}
ROUNDS = 7  # candidates are timed in turn, round by round (candidates.interleaved_latency)
TUNING_CRITERION = Criterion()  # the fidelity floor: tuning never sees the evaluation labels
Emitter = Callable[..., tuple[list[Built], dict | None]]
FORMAT_NOTE = ("formats compared on this host: which interpreter is faster here need not be the faster one on "
               "the target's CPU; `edgekiln deploy` measures the shipped model there")


@dataclass(frozen=True)
class FormatPlan:
    """One artifact format of a search: its candidate emitter (what it needs beyond the common arguments
    bound) and why the target's interpreter cannot run a model (None: it can; --force waives it)."""

    format: str
    emitter: Emitter = tflite_variants.build
    target_problem: Callable[[bytes], str | None] = lambda model: None


@dataclass(frozen=True)
class Selection:
    """The artifacts to ship (chosen model + float32 baseline) and the rows they were chosen from."""

    artifacts: Artifacts
    rows: list[Row]
    choice: Choice
    built: dict[str, Built]  # every timed candidate, by row name (the benchmark re-times them)


def select(graph: Any, formats: list[FormatPlan], recipe: Recipe, data: Datasets, threads: int,
           workdir: Path, only: str | None = None) -> Selection:
    """Build every format's candidates, judge and time them in one table, and choose; the choice's
    manifest block rides along in artifacts.choice.

    With more than one format, rows are named "format:variant" and a format whose conversion fails is
    left out (and said so) instead of stopping the build. Candidates the target cannot run are left out
    and listed in the manifest; the float32 baselines stay (they are the yardstick).
    only: build just this variant (and what it is built from) and ship it when it was built, e.g. the
    unpruned reference of a pruned build made the way the shipped variant was.
    """
    labelled = data.evaluation is not None and data.evaluation.labels is not None
    criterion = Criterion(max_drop=recipe.max_drop if labelled else None)
    judge = Judge(graph, data, threads, recipe.main_output)
    # The search's own decisions (calibration method, what stays float) are made on other held-back
    # samples, by fidelity alone: the samples and labels that judge the table did not shape the candidates.
    tuner = Judge(graph, Datasets(None, data.tuning_set, None), threads)
    built, diagnoses, failed = _build_all(graph, formats, recipe, data, tuner, TUNING_CRITERION, workdir, only)
    ready = {key: b for key, b in built.items() if b.model is not None}
    baselines = {key for key, b in ready.items() if b.candidate.name == BASELINE}
    problems = {f.format: f.target_problem for f in formats}
    unrunnable = {key: why for key, b in ready.items() if (why := problems[b.candidate.format](b.model))}
    refused = {key: why for key, why in unrunnable.items() if key not in baselines}
    ready = {key: b for key, b in ready.items() if key not in refused}
    runs = max(1, recipe.bench_runs // ROUNDS)
    rows = _rows(ready, judge, data, runs, threads)
    yardstick = min((r for r in rows if r.name in baselines), key=lambda r: r.p50_ms)  # the fastest float32
    choice = pick(_eligible(rows, baselines, unrunnable, recipe.quantize, only), criterion, yardstick)
    chosen = ready[choice.chosen.name]
    model_format = chosen.candidate.format
    baseline = ready[_key(model_format, BASELINE, len(formats) > 1)]
    section = _section(recipe, criterion, choice, rows, built, diagnoses, chosen, runs, threads)
    section["data"] = _data_note(data, judge, len(rows))
    section["yardstick"] = yardstick.name  # the float32 row "slower" and the table's Nx are relative to
    for row in section["candidates"]:
        if row["name"] in unrunnable and row["verdict"] != "chosen":  # a float32 baseline the target cannot run
            row.update(verdict=f"not eligible: {unrunnable[row['name']]}", short="target can't run it")
    if refused:
        section["refused_by_target"] = refused
    if len(formats) > 1:
        section["formats"] = {"compared": [f.format for f in formats], "failed": failed, "note": FORMAT_NOTE}
    stats = STATS[model_format]
    artifacts = Artifacts(model_format, chosen.model, baseline.model, stats(chosen.model), stats(baseline.model),
                          layouts=chosen.layouts, quantize=chosen.candidate.quantize, choice=section)
    return Selection(artifacts, rows, choice, ready)


def _eligible(rows: list[Row], baselines: set[str], unrunnable: dict[str, str], quantize: Quantize,
              only: str | None) -> list[Row]:
    """The rows the choice may ship: runnable on the target, and no float32 baseline for a forced mode."""
    free = quantize in (Quantize.auto, Quantize.none)
    eligible = [r for r in rows if (free or r.name not in baselines) and r.name not in unrunnable]
    refused = [why for name, why in unrunnable.items() if name not in baselines]
    if not eligible and not free and refused:
        raise TargetError(refused[0], "use --quantize auto to pick a variant the target can run, or --force to "
                                      "build it anyway")
    # Nothing runs on the target: the float32 baseline goes on, and the target check refuses it by name.
    eligible = eligible or [r for r in rows if r.name in baselines]
    return [r for r in eligible if r.name == only] or eligible


def _build_all(graph: Any, formats: list[FormatPlan], recipe: Recipe, data: Datasets, judge: Judge,
               criterion: Criterion, workdir: Path,
               only: str | None = None) -> tuple[dict[str, Built], dict[str, dict], dict[str, str]]:
    """Every format's Built candidates by row name, each format's int8 diagnosis, and the formats that failed."""
    built, diagnoses, failed = {}, {}, {}
    compared = len(formats) > 1
    for f in formats:
        candidates = plan(recipe.quantize, [f.format], calibrated=data.calib is not None)
        if only is not None:  # the int8 refinements are built from plain int8: it comes along
            candidates = [c for c in candidates if c.name in (BASELINE, only) or
                          (c.name == "int8" and only.startswith("int8"))]
        scratch = workdir / f"candidates_{f.format}" if compared else workdir
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            made, diagnosis = f.emitter(graph, candidates, data.calib, judge, criterion, scratch, recipe.int8_io,
                                        str(recipe.calibration))
        except EdgekilnError as exc:
            if not compared or len(failed) == len(formats) - 1:  # nothing else to ship: the error stands
                raise
            failed[f.format] = exc.one_line()
            continue
        built.update({_key(f.format, b.candidate.name, compared): b for b in made})
        if diagnosis is not None:
            diagnoses[f.format] = diagnosis
    return built, diagnoses, failed


def _key(model_format: str, name: str, compared: bool) -> str:
    """A candidate's row name: the variant, prefixed by its format when formats are compared."""
    return f"{model_format}:{name}" if compared else name


def _rows(ready: dict[str, Built], judge: Judge, data: Datasets, runs: int, threads: int) -> list[Row]:
    models = {name: open_model(b.candidate.format, b.timed_as or b.model, threads, b.layouts)
              for name, b in ready.items()}
    latency = interleaved_latency(models, data.golden_set, runs, ROUNDS)
    rows = []
    for name, b in ready.items():
        q = judge(b.candidate.format, b.model, b.layouts)
        rows.append(Row(name, b.candidate.format, str(b.candidate.quantize), len(b.model),
                        latency[name]["p50_ms"], latency[name]["runs"], q.sqnr_db, q.agreement, q.accuracy,
                        q.accuracy_drop, b.details.get("coverage", {}).get("fast_path_pieces"), b.notes))
    return rows


def _section(recipe: Recipe, criterion: Criterion, choice: Choice, rows: list[Row], built: dict[str, Built],
             diagnoses: dict[str, dict], chosen: Built, runs: int, threads: int) -> dict:
    """What the manifest's quantization block adds: the table, the choice and why, how it was measured."""
    return {
        "requested": str(recipe.quantize),
        "variant": choice.chosen.name,
        "reason": choice.reason,
        "criterion": criterion.describe(),
        "candidates": [dict(r.to_dict(), verdict=choice.verdicts.get(r.name, "baseline (not eligible)"),
                            short=choice.short.get(r.name, "baseline")) for r in rows],
        "not_built": {key: "; ".join(b.notes) for key, b in built.items() if b.model is None},
        "failed": {key: b.notes[0].removeprefix("failed: ") for key, b in built.items()
                   if b.model is None and b.notes and b.notes[0].startswith("failed: ")},
        "timing": {"measured_on": "host", "threads": threads, "rounds": ROUNDS,
                   "runs_per_candidate": {r.name: r.runs for r in rows},
                   "method": f"candidates timed in turn, round by round, each for about {ROUND_MS:g} ms "
                             f"(at least {runs} runs) per round; p50 = median of the round p50s"},
        "details": {k: v for k, v in chosen.details.items() if k != "coverage"},
        "coverage": chosen.details.get("coverage"),
        "diagnosis": _diagnosis(diagnoses, chosen.candidate.format),
    }


def _diagnosis(diagnoses: dict[str, dict], preferred: str) -> dict:
    """The plain-int8 diagnosis of the shipped format, else of the other one (the block says which)."""
    if not diagnoses:
        return {"of": None, "note": "no int8 candidate was built (mode, missing calibration data, or format)"}
    model_format = preferred if preferred in diagnoses else next(iter(diagnoses))
    return dict(diagnoses[model_format], format=model_format)


def _data_note(data: Datasets, judge: Judge, candidates: int) -> dict:
    """Which samples shaped the candidates and which judged them, and the selection effect that remains."""
    tuned, checked = data.tuning_set, judge.check
    separate = tuned is not checked
    judged = f"fidelity on {checked.size} held-back samples" + (
        f", accuracy on {judge.evaluation.size} labelled evaluation samples" if judge.evaluation is not None else "")
    return {
        "calibration_samples": data.calib.size if data.calib is not None else 0,
        "tuning_samples": tuned.size,
        "judging_samples": checked.size,
        "tuned_on": f"{tuned.size} held-back calibration samples, by fidelity ({TUNING_CRITERION.describe()})",
        "judged_on": judged,
        "note": ("tuning and judging samples are disjoint" if separate else
                 "too few samples were held back to split: the same samples tuned and judged the candidates")
        + f"; the chosen variant's figures are the best of {candidates} measured on the judging data, so they "
          "carry a small selection effect",
    }
