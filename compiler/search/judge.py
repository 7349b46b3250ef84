"""Judging and timing candidates through the runtime: fidelity against the source model, accuracy, latency.

One Judge per build compares every candidate's outputs with the source model's (computed once); the
candidates are timed in turn, round by round, so that a shared host's drift hits them all alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler import measure
from edgekiln.compiler.data import Datasets
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.search.choose import Criterion
from edgekiln.runtime import Model


@dataclass(frozen=True)
class Quality:
    """How faithful a model is: against the source model on held-back samples, and labelled accuracy."""

    sqnr_db: float | None
    agreement: float | None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    cosine_mean: float | None = None  # None: no output has a vector axis (measure.cosine)
    cosine_p5: float | None = None


class Judge:
    """Fidelity and accuracy of any candidate's bytes, through the runtime, against the source model.

    The source model's outputs are computed once; every candidate is compared with the same arrays.
    """

    def __init__(self, graph: Any, data: Datasets, threads: int, main_output: str | None = None) -> None:
        self.threads, self.main = threads, main_output
        self.check = data.fidelity_set
        self._reference = dict(zip(graph.output_names, graph.run(self.check.inputs), strict=True))
        labelled = data.evaluation if data.evaluation is not None and data.evaluation.labels is not None else None
        self.evaluation = labelled
        self.labels = labelled.labels if labelled is not None else None
        if labelled is not None and self.labels is not None:
            source = dict(zip(graph.output_names, graph.run(labelled.inputs), strict=True))
            self.reference_accuracy = measure.accuracy(list(source.values()), self.labels, list(source),
                                                       main_output)

    def __call__(self, model_format: str, model_bytes: bytes, layouts: dict | None = None) -> Quality:
        model = measure.open_model(model_format, model_bytes, self.threads, layouts)
        outputs = measure.predict(model, self.check)
        names = [info.name for info in model.outputs]
        fidelity = measure.fidelity(self._ordered(model), outputs, names)
        accuracy = drop = None
        if self.evaluation is not None and self.labels is not None:
            ours = measure.predict(model, self.evaluation)
            accuracy = round(measure.accuracy(ours, self.labels, names, self.main), 3)
            drop = round(self.reference_accuracy - accuracy, 3)
        return Quality(fidelity["sqnr_db"], fidelity.get("top1_agreement"), accuracy, drop,
                       fidelity.get("cosine_mean"), fidelity.get("cosine_p5"))

    def _ordered(self, model: Model) -> list[np.ndarray]:
        if all(info.name in self._reference for info in model.outputs):
            return [self._reference[info.name] for info in model.outputs]
        return list(self._reference.values())


ROUND_MS = 25.0        # each round times every candidate for about this long (at least min_runs runs)
MAX_RUNS_PER_ROUND = 500


def interleaved_latency(models: dict[str, Model], sample: Dataset, min_runs: int, rounds: int) -> dict[str, dict]:
    """p50 of every model on the first sample of `sample`, timed round by round (interleaved_feeds)."""
    feeds = {name: [_raw(sample, m, info) for info in m.inputs] for name, m in models.items()}
    return interleaved_feeds(models, feeds, min_runs, rounds)


def interleaved_feeds(models: dict[str, Model], feeds: dict[str, list[np.ndarray]], min_runs: int,
                      rounds: int) -> dict[str, dict]:
    """p50 of every model on its raw feeds, timed round by round in turn so that a shared host's drift hits
    all alike.

    In each round every model runs for about ROUND_MS (at least `min_runs` invocations); a model's p50 is
    the median of its round p50s, so one burst of load from another process does not decide a choice.
    """
    runs = {}
    for name, model in models.items():  # warm-up (first runs allocate and pack weights), then a run count
        warm = [_timed(model, feeds[name]) for _ in range(5)]
        runs[name] = int(np.clip(ROUND_MS / max(min(warm), 1e-3), min_runs, MAX_RUNS_PER_ROUND))
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_round[name].append(float(np.median([_timed(model, feeds[name]) for _ in range(runs[name])])))
    return {name: {"p50_ms": round(float(np.median(v)), 4), "runs": runs[name] * rounds, "rounds": rounds}
            for name, v in per_round.items()}


def _timed(model: Model, feed: list[np.ndarray]) -> float:
    start = time.perf_counter()
    model.backend.run(feed)
    return (time.perf_counter() - start) * 1e3


def _raw(sample: Dataset, model: Model, info: Any) -> np.ndarray:
    from edgekiln.runtime.model import quantize, to_compiled

    return quantize(to_compiled(sample.inputs[info.name][:1], model.layouts.get(info.name)), info)


def rank(quality: Quality, criterion: Criterion) -> tuple:
    """How calibration trials and refinements are ranked, both formats alike: meets the criterion, then
    fidelity_key by what the criterion reads."""
    return (criterion.meets(quality), *fidelity_key(quality, criterion))


def fidelity_key(quality: Quality, criterion: Criterion | None = None) -> tuple[float, ...]:
    """Larger is more faithful; a figure a model does not have (no labels, no classes) counts as a tie.

    The smaller accuracy drop, then the higher top-1 agreement, then the higher SQNR (a higher SQNR with
    fewer samples agreeing is the less faithful model to a user who reads top-1). Judged by a cosine floor,
    the cosines (criterion.faithfulness: 5th percentile, then mean) come before the agreement: the floor's
    agreement part is already in meets(), and among models that meet it the user asked for the cosine.
    """
    drop = -(quality.accuracy_drop or 0.0)
    agreement = 1.0 if quality.agreement is None else quality.agreement
    if criterion is not None and criterion.by_cosine:
        *cosines, sqnr = criterion.faithfulness(quality)
        return (drop, *cosines, agreement, sqnr)
    return (drop, agreement, float("inf") if quality.sqnr_db is None else quality.sqnr_db)


def quality_dict(quality: Quality) -> dict:
    return {k: v for k, v in vars(quality).items() if v is not None}
