"""Pruning one model end to end, whatever its framework: ratios, removal, recovery, and the report.

A framework adapter hands the driver a `Subject` (the model, its channel analysis, and how to run,
zero-mask, prune+recover and count it). The driver holds what Keras and ONNX share: uniform ratios
or the auto search (a sensitivity scan on zero-masked copies, then a bounded binary search whose
probes are pruned AND recovered), and the manifest's pruning block.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypedDict, TypeVar

import numpy as np

from edgekiln.compiler import Progress, manifest_schema
from edgekiln.compiler.prune import cost, importance, sensitivity
from edgekiln.compiler.prune.channels import Plan, Ratios, Scores
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.paired import PairedDrop, paired_drop
from edgekiln.compiler.prune.recovery_facts import Reconstruction, Training
from edgekiln.compiler.recipe import Recover

SCAN_SAMPLES = 500    # evaluation samples per sensitivity probe (a scan makes ~30 of them)
TRIAL_SAMPLES = 10_000  # evaluation samples per recovered probe: all a user gives, up to this many
MAX_TRIALS = 6        # recovered probes in auto mode (each costs a recovery): bisects the 11 scales and more
QUANT_RESERVE = 0.3   # share of the accuracy budget that auto leaves to quantization
# auto keeps channel counts at multiples of 16: LiteRT's XNNPACK int8 kernels work in tiles of 16
# channels here; the sample ResNet at 16/32/48 channels ran 0.028 ms, at 17/33/49 0.051 ms (+7% MACs).
CHANNEL_MULTIPLE = 16

ModelT = TypeVar("ModelT")  # the framework's model: a Keras model or an onnx.ModelProto


class Subject(Protocol[ModelT]):
    """What the driver needs from a framework adapter."""

    model: ModelT       # the original model; never modified
    analysis: Analysis

    def predict(self, model: ModelT, x: np.ndarray) -> np.ndarray:
        """The first output of `model` on `x`."""

    def masked(self, plan: Plan) -> contextlib.AbstractContextManager[ModelT]:
        """The original model with the plan's channels zeroed at their consumers (same outputs as removed)."""

    def prune(self, plan: Plan, method: Recover) -> tuple[ModelT, list[Reconstruction | Training]]:
        """A new model with the plan's channels removed and recovered; the recovery steps' facts."""

    def params(self, model: ModelT) -> int:
        """Parameters of a model (the framework's own count)."""


class RecoveryFacts(TypedDict, total=False):
    """The pruning block's `recovery`: the method and its steps' facts; with recovery, the judging score before and
    after it (and, when it made the model worse, that its weights were not used); `reason` when nothing was
    removed."""

    method: str
    reason: str
    steps: list[Reconstruction | Training]
    score_before: float
    score_after: float
    metric: str
    samples: int
    used: bool
    refused: str
    seconds: float


class SearchFacts(TypedDict):
    """The pruning block's `search` (ratio auto): the budget, the candidate plans, the sensitivity scan, the
    search's per-group weights and its trials (each with its paired evidence), and why it stopped."""

    budget: float
    candidates: int
    channel_multiple: int
    rule: str
    stopped: str
    weights: dict[str, float]   # group label -> its share of the common ratio
    scan: sensitivity.ScanFacts
    trials: list[dict[str, object]]


class PruningBlock(TypedDict):
    """The manifest's pruning block of channel pruning, as this writer makes it: manifest_schema.Pruning (what the
    readers take, every kind of pruning in one) with the keys channel pruning always writes made required."""

    criterion: str
    ratio: float | str
    groups: list[manifest_schema.PrunedGroup]
    per_layer: list[dict]
    blocked: list[manifest_schema.BlockedGroup]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    macs_ratio: float
    recovery: RecoveryFacts
    accuracy: manifest_schema.PruningAccuracy
    search: SearchFacts | None
    seconds: float
    warnings: list[str]


class PruningJudge(Generic[ModelT]):
    """Scores a model in percent: accuracy with labels, else agreement with the original model.

    agreement: top-1 agreement with the original outputs; for single-valued outputs, fidelity =
    100 * (1 - relative RMS error).

    Each model (and each zero-masked plan) is run once per sample count: the search asks the same model for its
    score, its per-sample verdicts and its paired drop, and the original model for its verdicts in every trial.
    What is kept is each sample's top-1 class (the fidelity score for a single-valued output), not the outputs.
    """

    def __init__(self, subject: Subject[ModelT], x: np.ndarray, labels: np.ndarray | None) -> None:
        self.subject, self.x, self.labels = subject, x, labels
        self.reference = None if labels is not None else subject.predict(subject.model, x)
        vector = self.reference is not None and self.reference.ndim == 2 and self.reference.shape[1] > 1
        self.metric = "accuracy" if labels is not None else "agreement" if vector else "fidelity"
        # (model id or masked plan, samples) -> (the model, kept alive so that its id is not reused; what was judged)
        self._judged: dict[tuple[object, int], tuple[object, np.ndarray | float]] = {}

    def score(self, model: ModelT, limit: int | None = None) -> float:
        return self._score(self._run(model, limit))

    def masked_score(self, plan: Plan, limit: int | None = None) -> float:
        key = tuple((group, mask.tobytes()) for group, mask in sorted(plan.items()))
        if (key, self._samples(limit)) not in self._judged:
            with self.subject.masked(plan) as model:
                return self._score(self._run(model, limit, key))
        return self._score(self._run(self.subject.model, limit, key))

    def verdicts(self, model: ModelT, limit: int | None = None) -> np.ndarray | None:
        """Per sample, whether `model` is right (labels) or agrees with the original (class vectors);
        None for a single-valued output, which has no per-sample verdict."""
        if self.metric == "fidelity":
            return None
        top = self._run(model, limit)
        assert isinstance(top, np.ndarray)
        if self.labels is not None:
            return top == self.labels[: len(top)]
        return top == self.reference[: len(top)].reshape(len(top), -1).argmax(1)  # type: ignore[index]

    def paired(self, model: ModelT, limit: int | None = None) -> PairedDrop | None:
        """The paired drop of `model` against the original on the same samples (prune/paired.py)."""
        reference = self.verdicts(self.subject.model, limit)
        pruned = self.verdicts(model, limit)
        return None if reference is None or pruned is None else paired_drop(reference, pruned)

    def _samples(self, limit: int | None) -> int:
        return len(self.x[:limit])

    def _run(self, model: ModelT, limit: int | None, masked: object = None) -> np.ndarray | float:
        """Each sample's top-1 class of `model` on the first `limit` samples (the fidelity score for a
        single-valued output); `masked`: the plan whose zero-masked original `model` is."""
        key = (id(model) if masked is None else masked, self._samples(limit))
        if key not in self._judged:
            y = self.subject.predict(model, self.x[:limit])
            kept = self._fidelity(y) if self.metric == "fidelity" else y.reshape(len(y), -1).argmax(1)
            self._judged[key] = (None if masked is not None else model), kept
        return self._judged[key][1]

    def _fidelity(self, y: np.ndarray) -> float:
        ref = self.reference[: len(y)]  # type: ignore[index]
        error = float(np.linalg.norm(y - ref)) / max(float(np.linalg.norm(ref)), 1e-12)
        return 100 * max(0.0, 1 - error)

    def _score(self, judged: np.ndarray | float) -> float:
        if not isinstance(judged, np.ndarray):
            return judged
        if self.labels is not None:
            return float(np.mean(judged == self.labels[: len(judged)]) * 100)
        return float(np.mean(judged == self.reference[: len(judged)].argmax(-1)) * 100)  # type: ignore[index]


@dataclass(frozen=True)
class PruneOutcome(Generic[ModelT]):
    """The pruned, recovered model (None when nothing was removed) and the manifest's pruning block."""

    model: ModelT | None
    block: PruningBlock


def run(subject: Subject[ModelT], ratio: float | str, criterion: str, method: Recover, max_drop: float,
        judge: PruningJudge[ModelT], progress: Progress = lambda stage: None, time_cap: float | None = None
        ) -> PruneOutcome[ModelT]:
    """Prune `subject` at a uniform ratio or, with ratio 'auto', at searched per-group ratios.
    time_cap (--prune-time): seconds after which the auto search starts no new probe."""
    start = time.perf_counter()
    scores = importance.group_scores(subject.analysis, criterion)
    multiple = CHANNEL_MULTIPLE if ratio == "auto" else 1  # an explicit ratio is applied as given
    probes = _Probes(subject, scores, method, multiple, judge)
    search = None
    if ratio == "auto":
        deadline = None if time_cap is None else time.monotonic() + time_cap
        ratios, search = _auto(subject.analysis, scores, judge, probes, max_drop, progress, deadline)
    else:
        ratios = importance.uniform(subject.analysis, float(ratio))
    plan = importance.plan_for(subject.analysis, scores, ratios, multiple)
    if not plan:
        return PruneOutcome(None, _block(subject, plan, ratio, criterion, subject.model, None, judge, search, start))
    progress(f"Pruning {len(plan)} channel groups, recovering by {method}")
    pruned, facts = probes.get(ratios)
    return PruneOutcome(pruned, _block(subject, plan, ratio, criterion, pruned, facts, judge, search, start))


class _Probes(Generic[ModelT]):
    """Prunes and recovers each ratio set once: the auto search's probes are reused, not recomputed.

    Recovery never hurts: a recovered model that scores below the unrecovered one (the plan's channels
    removed, weights untouched) on the judging samples is not used; the facts record both scores.
    """

    def __init__(self, subject: Subject[ModelT], scores: Scores, method: Recover, multiple: int,
                 judge: PruningJudge[ModelT]) -> None:
        self.subject, self.scores, self.method, self.multiple, self.judge = subject, scores, method, multiple, judge
        self.cache: dict[tuple[tuple[int, float], ...], tuple[ModelT, RecoveryFacts]] = {}

    def get(self, ratios: Ratios) -> tuple[ModelT, RecoveryFacts]:
        key = tuple(sorted(ratios.items()))
        if key not in self.cache:
            begin = time.perf_counter()
            plan = importance.plan_for(self.subject.analysis, self.scores, ratios, self.multiple)
            model, steps = self.subject.prune(plan, self.method)
            facts: RecoveryFacts = {"method": str(self.method), "steps": steps}
            if self.method is not Recover.none and plan:
                model, facts = self._never_worse(plan, model, facts)
            self.cache[key] = model, {**facts, "seconds": round(time.perf_counter() - begin, 2)}
        return self.cache[key]

    def _never_worse(self, plan: Plan, recovered: ModelT, facts: RecoveryFacts) -> tuple[ModelT, RecoveryFacts]:
        before = self.judge.masked_score(plan, TRIAL_SAMPLES)  # exactly the unrecovered model's outputs
        after = self.judge.score(recovered, TRIAL_SAMPLES)
        facts = {**facts, "score_before": round(before, 3), "score_after": round(after, 3),
                 "metric": self.judge.metric, "samples": min(TRIAL_SAMPLES, len(self.judge.x))}
        if after >= before:
            return recovered, facts
        unrecovered, _ = self.subject.prune(plan, Recover.none)
        return unrecovered, {**facts, "used": False,
                             "refused": f"{self.method} made the pruned model worse ({before:.2f} -> {after:.2f} "
                                        f"{self.judge.metric}): the unrecovered weights are kept"}


def _auto(analysis: Analysis, scores: Scores, judge: PruningJudge[ModelT], probes: _Probes[ModelT], max_drop: float,
          progress: Progress, deadline: float | None = None) -> tuple[Ratios, SearchFacts]:
    """Scan every group's sensitivity, then search the threshold plans with recovered probes."""
    progress(f"Pruning: sensitivity scan of {len(analysis.prunable)} groups x {len(sensitivity.AUTO_RATIOS)} ratios")
    scan = sensitivity.scan(analysis, scores, lambda plan: judge.masked_score(plan, SCAN_SAMPLES),
                            sensitivity.AUTO_RATIOS, judge.metric, min(SCAN_SAMPLES, len(judge.x)))
    options = sensitivity.worth_trying(sensitivity.candidates(scan, analysis, scores, probes.multiple), analysis,
                                       scores, probes.multiple)
    budget = round(max_drop * (1 - QUANT_RESERVE), 3)
    reference = judge.score(probes.subject.model, TRIAL_SAMPLES)
    progress(f"Pruning: searching {len(options)} candidate plans (<= {MAX_TRIALS} probes, each recovered by "
             f"{probes.method})")

    def trial(ratios: Ratios) -> float | PairedDrop:
        model = probes.get(ratios)[0]
        paired = judge.paired(model, TRIAL_SAMPLES)
        return paired if paired is not None else reference - judge.score(model, TRIAL_SAMPLES)

    ratios, trials, stopped = sensitivity.search(options, trial, budget, analysis, scores, MAX_TRIALS,
                                                 probes.multiple, deadline, progress)
    named: list[dict[str, object]] = [
        {"ratios": {g.label: t.ratios[g.id] for g in analysis.groups if g.id in t.ratios},
         "macs_after": t.macs, "drop": t.drop, "within_budget": t.within_budget, **t.evidence,
         "recovery": {k: v for k, v in probes.get(t.ratios)[1].items() if k in PROBE_RECOVERY}} for t in trials]
    share = sensitivity.weights(scan)
    return ratios, {"budget": budget, "candidates": len(options), "channel_multiple": probes.multiple,
                    "rule": BUDGET_RULE, "stopped": stopped,
                    "weights": {g.label: share[g.id] for g in analysis.groups if g.id in share},
                    "scan": scan.to_dict(), "trials": named}


PROBE_RECOVERY = ("score_before", "score_after", "used", "refused")  # what a trial records of its recovery
BUDGET_RULE = ("within budget when the one-sided 95% upper bound of the paired drop (same samples, Agresti-Min "
               "interval) is at most the budget; without a class output, when the drop is")


def _block(subject: Subject[ModelT], plan: Plan, ratio: float | str, criterion: str, pruned: ModelT,
           facts: RecoveryFacts | None, judge: PruningJudge[ModelT], search: SearchFacts | None, start: float
           ) -> PruningBlock:
    """The manifest's pruning block."""
    analysis = subject.analysis
    before, after = cost.cost(analysis), cost.cost(analysis, plan)
    return {
        "criterion": str(criterion), "ratio": ratio,
        "groups": [{"layers": list(g.producers), "channels_before": g.channels,
                    "channels_after": int(plan[g.id].sum()) if g.id in plan else g.channels}
                   for g in analysis.prunable],
        "per_layer": cost.per_layer(analysis, plan),
        "blocked": [{"layers": list(g.producers), "reasons": list(g.blocked)} for g in analysis.blocked],
        "params_before": subject.params(subject.model), "params_after": subject.params(pruned),
        "macs_before": before.macs, "macs_after": after.macs, "macs_ratio": round(after.macs / max(before.macs, 1), 4),
        "recovery": facts or {"method": "none", "reason": "nothing was removed"},
        "accuracy": {"metric": judge.metric, "reference": round(judge.score(subject.model), 3),
                     "before_recovery": round(judge.masked_score(plan), 3),  # exactly the removed model's
                     "after_recovery": round(judge.score(pruned), 3), "samples": len(judge.x),
                     "paired": _paired(judge, pruned)},
        "search": search, "seconds": round(time.perf_counter() - start, 2),
        "warnings": _warnings(plan, ratio, facts, search),
    }


def _paired(judge: PruningJudge[ModelT], pruned: ModelT) -> manifest_schema.PairedDrop | None:
    paired = judge.paired(pruned)
    return None if paired is None else paired.to_dict()


def _warnings(plan: Plan, ratio: float | str, facts: RecoveryFacts | None, search: SearchFacts | None) -> list[str]:
    notes = []
    if ratio == "auto" and not plan:
        notes.append(f"pruning: no candidate met the budget of {search['budget'] if search else '?'} points after "
                     "recovery, so nothing was removed; raise --max-drop or use --prune R")
    if plan and facts and facts["method"] == "none":
        notes.append("pruning without recovery (--recover none): accuracy usually collapses")
    return notes
