"""The pruning stage of a build: choose channels, remove them, recover accuracy, and measure the gain.

It sits between loading and emitting (DESIGN.md): the source Keras model is pruned and recovered,
exported to a new SavedModel, and handed on as the working graph. The bundle's accuracy and
fidelity are still measured against the ORIGINAL source model, so the drops reported include
pruning. After emission, `finish` compiles the unpruned model the same way and times both side by
side, so the manifest shows the speed-up measured, not only the MACs ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import analyze, measure
from .data import Dataset
from .errors import RecipeError
from .graph import keras as keras_graph
from .graph import keras_prune, keras_recover
from .prune import cost, groups, importance, sensitivity
from .prune.channels import Plan
from .prune.recover import Recover, resolve
from .recipe import Recipe
from .stages import Artifacts, Datasets, host_threads

SCAN_SAMPLES = 500    # evaluation samples per sensitivity probe (a scan makes ~30 probes)
TRIAL_SAMPLES = 2000  # evaluation samples per recovered probe of the auto search
MAX_TRIALS = 4        # recovered probes in auto mode: each costs a recovery
QUANT_RESERVE = 0.3   # share of --max-drop that auto leaves to quantization
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Pruned:
    """The working graph to emit (the source's when nothing was removed) and the manifest's pruning block."""

    graph: keras_graph.KerasGraph
    block: dict
    removed: bool


class Judge:
    """Scores a Keras model in percent on one dataset: accuracy with labels, else agreement with the source.

    agreement: top-1 agreement with the source model's outputs; for a single-valued output,
    fidelity = 100 * (1 - relative RMS error).
    """

    def __init__(self, source: Any, dataset: Dataset) -> None:
        self.x = next(iter(dataset.inputs.values()))
        self.labels = dataset.labels
        self.reference = None if self.labels is not None else _predict(source, self.x)
        vector = self.reference is not None and self.reference.ndim == 2 and self.reference.shape[1] > 1
        self.metric = "accuracy" if self.labels is not None else "agreement" if vector else "fidelity"

    def score(self, model: Any, limit: int | None = None) -> float:
        y = _predict(model, self.x[:limit])
        if self.labels is not None:
            return float(np.mean(y.reshape(len(y), -1).argmax(1) == self.labels[:limit]) * 100)
        ref = self.reference[:limit]  # type: ignore[index]
        if self.metric == "agreement":
            return float(np.mean(y.argmax(-1) == ref.argmax(-1)) * 100)
        return float(100 * max(0.0, 1 - np.linalg.norm(y - ref) / max(float(np.linalg.norm(ref)), 1e-12)))


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    y = model.predict(x, batch_size=256, verbose=0)
    return y[0] if isinstance(y, list | tuple) else y


def prune(graph: keras_graph.KerasGraph, recipe: Recipe, data: Datasets, workdir: Path,
          progress: Progress) -> Pruned | None:
    """Prune the source model as the recipe says; None without --prune."""
    if recipe.prune is None:
        return None
    start = time.perf_counter()
    model = _check(graph, recipe, data)
    analysis = groups.analyze(keras_prune.channel_graph(model))
    scores = importance.group_scores(analysis, recipe.prune_criterion)
    judge = Judge(model, data.evaluation or data.holdout or data.calib)  # type: ignore[arg-type]
    method = resolve(recipe.recover, trainable=True)
    recovery = _Recovery(model, analysis, scores, method, data.calib, judge)
    search = None
    if recipe.prune == "auto":
        ratios, search = _auto(recipe, analysis, scores, judge, recovery, progress)
    else:
        ratios = importance.uniform(analysis, float(recipe.prune))
    plan = importance.plan_for(analysis, scores, ratios)
    if not plan:
        return Pruned(graph, _block(recipe, analysis, plan, model, model, None, judge, search, start), False)
    progress(f"Pruning {len(plan)} channel groups, recovering by {method}")
    pruned, facts = recovery.get(ratios)
    block = _block(recipe, analysis, plan, model, pruned, facts, judge, search, start)
    exported = keras_graph.from_model(pruned, workdir / "pruned_saved_model", graph.source_format, "the pruned model")
    return Pruned(exported, block, True)


def _check(graph: keras_graph.KerasGraph, recipe: Recipe, data: Datasets) -> Any:
    if graph.keras_model is None:
        raise RecipeError("--prune needs a Keras model (.keras or .h5): a SavedModel cannot be rebuilt with "
                          "fewer channels", "load it in Keras, save it as .keras, and build that")
    if len(graph.inputs) != 1:
        raise RecipeError("pruning supports single-input models only")
    recover = resolve(recipe.recover, trainable=True)
    if recover is not Recover.none and data.calib is None:
        raise RecipeError(f"recovery by {recover} runs on calibration data", "pass --calib DATA")
    if recover is Recover.finetune and (data.calib is None or data.calib.labels is None):
        raise RecipeError("--recover finetune needs labels 'y' in the calibration data",
                          "use --recover distill, which needs no labels")
    if recipe.prune == "auto" and data.evaluation is None and data.holdout is None:
        raise RecipeError("--prune auto needs data to measure sensitivity", "pass --eval DATA (labelled is best)")
    return graph.keras_model


class _Recovery:
    """Prunes and recovers a plan once; the auto search's probes are reused, not recomputed."""

    def __init__(self, model: Any, analysis: groups.Analysis, scores: dict, method: Recover,
                 calib: Dataset | None, judge: Judge) -> None:
        self.model, self.analysis, self.scores, self.method, self.judge = model, analysis, scores, method, judge
        self.x = None if calib is None else next(iter(calib.inputs.values()))
        self.y = None if calib is None else calib.labels
        self.cache: dict[tuple, tuple[Any, dict]] = {}

    def get(self, ratios: dict[int, float]) -> tuple[Any, dict]:
        key = tuple(sorted(ratios.items()))
        if key not in self.cache:
            self.cache[key] = self._run(importance.plan_for(self.analysis, self.scores, ratios))
        return self.cache[key]

    def _run(self, plan: Plan) -> tuple[Any, dict]:
        start = time.perf_counter()
        pruned = keras_prune.apply(self.model, self.analysis, plan)
        steps = []
        if self.method is not Recover.none:  # reconstruction first: a good start for training, and cheap
            steps.append(keras_recover.reconstruct(pruned, self.model, self.analysis, plan, self.x))
        if self.method is Recover.distill:
            steps.append(keras_recover.distill(pruned, self.model, self.x))
        elif self.method is Recover.finetune:
            steps.append(keras_recover.finetune(pruned, self.x, self.y))
        return pruned, {"method": str(self.method), "steps": steps,
                        "seconds": round(time.perf_counter() - start, 2)}


def _auto(recipe: Recipe, analysis: groups.Analysis, scores: dict, judge: Judge, recovery: _Recovery,
          progress: Progress) -> tuple[dict[int, float], dict]:
    """Scan every group's sensitivity, then search the threshold plans with recovered probes."""
    progress(f"Pruning: sensitivity scan of {len(analysis.prunable)} groups x {len(sensitivity.AUTO_RATIOS)} ratios")
    model = recovery.model

    def masked_score(plan: Plan) -> float:
        with keras_prune.masked(model, analysis, plan):
            return judge.score(model, SCAN_SAMPLES)

    scan = sensitivity.scan(analysis, scores, masked_score, sensitivity.AUTO_RATIOS, judge.metric,
                            min(SCAN_SAMPLES, len(judge.x)))
    options = sensitivity.candidates(scan, analysis, scores)
    budget = round(recipe.max_drop * (1 - QUANT_RESERVE), 3)
    reference = judge.score(model, TRIAL_SAMPLES)
    progress(f"Pruning: searching {len(options)} candidate plans (<= {MAX_TRIALS} probes, each recovered by "
             f"{recovery.method})")

    def trial(ratios: dict[int, float]) -> float:
        return reference - judge.score(recovery.get(ratios)[0], TRIAL_SAMPLES)

    ratios, trials = sensitivity.search(options, trial, budget, analysis, scores, MAX_TRIALS)
    summary = {"budget": budget, "candidates": len(options), "scan": scan.to_dict(),
               "trials": [{"ratios": _named(analysis, t.ratios), "macs": t.macs, "drop": t.drop,
                           "within_budget": t.within_budget} for t in trials]}
    return ratios, summary


def _named(analysis: groups.Analysis, ratios: dict[int, float]) -> dict[str, float]:
    return {g.label: ratios[g.id] for g in analysis.groups if g.id in ratios}


def _block(recipe: Recipe, analysis: groups.Analysis, plan: Plan, model: Any, pruned: Any, facts: dict | None,
           judge: Judge, search: dict | None, start: float) -> dict:
    """The manifest's pruning block."""
    before, after = cost.cost(analysis), cost.cost(analysis, plan)
    full = judge.score(model)
    with keras_prune.masked(model, analysis, plan):  # exactly the pruned model before recovery
        unrecovered = judge.score(model)
    return {
        "criterion": str(recipe.prune_criterion), "ratio": recipe.prune,
        "groups": [{"layers": list(g.producers), "channels_before": g.channels,
                    "channels_after": int(plan[g.id].sum()) if g.id in plan else g.channels}
                   for g in analysis.prunable],
        "per_layer": cost.per_layer(analysis, plan),
        "blocked": [{"layers": list(g.producers), "reasons": list(g.blocked)} for g in analysis.blocked],
        "params_before": int(model.count_params()), "params_after": int(pruned.count_params()),
        "macs_before": before.macs, "macs_after": after.macs, "macs_ratio": round(after.macs / max(before.macs, 1), 4),
        "recovery": facts or {"method": "none", "reason": "nothing was removed"},
        "accuracy": {"metric": judge.metric, "reference": round(full, 3), "before_recovery": round(unrecovered, 3),
                     "after_recovery": round(judge.score(pruned), 3), "samples": len(judge.x)},
        "search": search, "seconds": round(time.perf_counter() - start, 2),
    }


def finish(pruned: Pruned | None, source: keras_graph.KerasGraph, artifacts: Artifacts, data: Datasets,
           recipe: Recipe, target: Any, emit: Callable[..., bytes], progress: Progress) -> dict | None:
    """The pruning block completed with the unpruned model compiled the same way and timed side by side."""
    if pruned is None:
        return None
    if not pruned.removed:
        return {**pruned.block, "measured": None}
    progress(f"Measuring the speed-up: the unpruned model compiled the same way ({recipe.quantize})")
    unpruned = emit(source.saved_model_dir, recipe.quantize, data.calib, recipe.int8_io)
    threads = recipe.threads or host_threads(target)
    models = [measure.open_model(artifacts.format, b, threads) for b in (artifacts.model, unpruned)]
    # Three alternating rounds, each model keeping its best: drift on a shared host hits both alike.
    rounds = [[measure.host_latency(m, data.golden_set, recipe.bench_runs) for m in models] for _ in range(3)]
    best = [min((r[k] for r in rounds), key=lambda lat: lat["p50_ms"]) for k in range(2)]
    macs = (artifacts.model_stats.macs, analyze.tflite_stats(unpruned).macs)
    return {**pruned.block, "measured": {
        "compiled_as": str(recipe.quantize), "threads": threads,
        "model_bytes": len(artifacts.model), "unpruned_model_bytes": len(unpruned),
        "size_ratio": round(len(artifacts.model) / len(unpruned), 4),
        "macs": macs[0], "unpruned_macs": macs[1], "macs_ratio": round(macs[0] / max(macs[1], 1), 4),
        "p50_ms": best[0]["p50_ms"], "unpruned_p50_ms": best[1]["p50_ms"],
        "latency_ratio": round(best[0]["p50_ms"] / best[1]["p50_ms"], 4),
        "speedup": round(best[1]["p50_ms"] / best[0]["p50_ms"], 3)}}
