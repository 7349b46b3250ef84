"""`--drop-layers auto` / `--prune-heads auto`: how far an encoder can be slimmed within the budget.

Framework-free (numpy only): the caller hands over `apply(drop, ratio) -> (model, facts)`, the slimmed AND
re-fitted model of one setting (facts carry its `params_after`), and `judge(model) -> Quality`, the float
model's quality on the judging samples. The search returns the setting with the fewest parameters left whose
quality meets the budget, the probes it made, and why it stopped.

The grid: rows are encoder-block drop counts, most first (B-1 ... 0 for B blocks); columns are head ratios,
fewest first (0, 0.25, 0.5, 0.75, those that remove a distinct number of heads). A knob given as a number is
a single row or column. Search assumption: quality after re-fit does not get better when one knob removes
more with the other fixed (dropping k+1 blocks is not better than k at the same head ratio; removing more
heads is not better at the same drop count). Re-fitting can break this (it is not guaranteed), which is why
every setting that can be chosen is itself probed, never inferred. Under the assumption the settings within
budget form a staircase, walked like a saddleback search: from the most blocks dropped, each row raises the
head ratio until a probe misses, then the next row (fewer blocks dropped) starts from the ratio the previous
one reached (a pass there is implied, not probed: that point drops fewer blocks at the same ratio, so it can
never be the most slimmed). At most rows + columns - 1 probes: 6 for a 3-block encoder with both knobs auto.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NotRequired, TypedDict, TypeVar

import numpy as np

from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.prune.driver import QUANT_RESERVE
from edgekiln.compiler.prune.heads import heads_removed
from edgekiln.compiler.recipe import Recipe

HEAD_RATIOS = (0.25, 0.5, 0.75)  # the head-ratio grid of --prune-heads auto (0 besides, when drops are auto too)
MAX_PROBES = 8                   # each probe costs a re-fit and a prediction on the judging samples
# Without labels and without --min-cosine / --min-cosine-p5, the floors on the output cosine to the source
# (evaluate/metrics.cosine). Mean 0.99: the outputs keep their direction to within ~8 degrees on average, so class
# scores and embedding neighbourhoods barely move, and quantization after it still has room before the build's
# own fidelity checks; p5 0.95: no more than one sample in twenty is bent further than ~18 degrees (a mean
# alone hides a few ruined inputs). The same pair the sample transformer's bench calls "faithful".
DEFAULT_MIN_COSINE, DEFAULT_MIN_COSINE_P5 = 0.99, 0.95
MIN_AGREEMENT = 0.99  # without labels, for class vectors: search/choose.Criterion's min_agreement
ModelT = TypeVar("ModelT")  # the framework's model: a Keras model or an onnx.ModelProto


@dataclass(frozen=True)
class Setting:
    """Blocks dropped (the last ones) and the share of every attention layer's heads removed."""

    drop: int
    heads: float


@dataclass(frozen=True)
class Budget:
    """What a setting must meet: an accuracy drop (points, labels only), cosine floors and, without labels, a
    top-1 agreement floor for class vectors (None: none)."""

    reference: float | None  # the source's accuracy on the judging samples
    max_drop: float | None
    min_cosine: float | None
    min_cosine_p5: float | None
    rule: str
    min_agreement: float | None = None

    def misses(self, q: Quality) -> list[str]:
        """Why `q` is over budget; empty when it meets it."""
        why = []
        if self.max_drop is not None and self.reference is not None and q.accuracy is not None:
            drop = self.reference - q.accuracy
            if drop > self.max_drop:
                why.append(f"accuracy drop {drop:.2f} > {self.max_drop:g} points")
        for name, value, floor in (("cosine", q.cosine_mean, self.min_cosine),
                                   ("cosine p5", q.cosine_p5, self.min_cosine_p5)):
            if floor is not None and (value is None or value < floor):
                why.append(f"{name} {'unmeasured' if value is None else f'{value:.4f}'} < {floor:g}")
        if self.min_agreement is not None and q.agreement is not None and q.agreement < self.min_agreement:
            why.append(f"top-1 agreement {q.agreement:.4f} < {self.min_agreement:g}")
        return why


def budget(max_drop: float, reference: float | None, min_cosine: float | None,
           min_cosine_p5: float | None, top1: bool = True) -> Budget:
    """The search's budget. With labels (a reference accuracy): (1 - QUANT_RESERVE) x max_drop points, the
    rest left to quantization as the channel search does, plus the cosine floors given. Without labels: the
    cosine floors given, else DEFAULT_MIN_COSINE / DEFAULT_MIN_COSINE_P5, and top-1 agreement >= MIN_AGREEMENT
    for class vectors: the build's own rule without labels (search/choose.Criterion) keeps it beside a cosine
    floor, and a confident softmax keeps a cosine near 1 while its answer flips on a few inputs. top1 False
    (--embedding): no agreement floor."""
    if reference is not None:
        points = round(max_drop * (1 - QUANT_RESERVE), 3)
        rule = f"float accuracy drop <= {points:g} points ({1 - QUANT_RESERVE:.0%} of --max-drop {max_drop:g})"
        floors = [f for f in (min_cosine, min_cosine_p5) if f is not None]
        return Budget(reference, points, min_cosine, min_cosine_p5,
                      rule + (" and the cosine floors given" if floors else ""))
    agreement = f"; top-1 agreement >= {MIN_AGREEMENT:g} for class vectors" if top1 else "; embeddings: no top-1"
    floor = MIN_AGREEMENT if top1 else None
    if min_cosine is None and min_cosine_p5 is None:
        return Budget(None, None, DEFAULT_MIN_COSINE, DEFAULT_MIN_COSINE_P5,
                      f"no labels: output cosine to the source mean >= {DEFAULT_MIN_COSINE:g} and p5 >= "
                      f"{DEFAULT_MIN_COSINE_P5:g} (the default floors){agreement}", floor)
    return Budget(None, None, min_cosine, min_cosine_p5, f"no labels: the cosine floors given{agreement}", floor)


def grid(blocks: int, head_counts: Sequence[int], drop: int | str, ratio: float | str
         ) -> tuple[list[int], list[float]]:
    """The rows (drop counts, most first) and columns (head ratios, fewest first) to search. A fixed knob is
    one value; an auto knob leaves out 0 when the other knob is fixed (0 is then the fallback, not a search).
    Ratios removing the same number of heads in every layer as a smaller one are left out."""
    both = drop == "auto" and ratio == "auto"
    rows = list(range(blocks - 1, -1 if both else 0, -1)) if drop == "auto" else [int(drop)]
    if ratio != "auto":
        return rows, [float(ratio)]
    cols, seen = [], set()
    for r in ((0.0,) if both else ()) + HEAD_RATIOS:
        removed = tuple(heads_removed(h, r) for h in head_counts)
        if removed not in seen and (r == 0.0 or any(removed)):
            seen.add(removed)
            cols.append(r)
    return rows, cols


class Figures(TypedDict, total=False):
    """What the judge measured of a model (Quality's figures that are not None)."""

    cosine_mean: float
    cosine_p5: float
    accuracy: float
    agreement: float


class ProbeFacts(TypedDict):
    """A Probe as the search's record in the manifest has it: the setting, the parameters left, the figures the
    judge measured (those it has), and the verdict."""

    drop_layers: int
    prune_heads: float
    params: int
    cosine_mean: NotRequired[float]
    cosine_p5: NotRequired[float]
    accuracy: NotRequired[float]
    agreement: NotRequired[float]
    within_budget: bool
    misses: list[str]


class Floors(TypedDict):
    min_cosine: float | None
    min_cosine_p5: float | None
    min_agreement: float | None


class SearchFacts(TypedDict):
    """The encoder slimming's `search` in the pruning block: the budget and its rule, every probe, the index of
    the chosen one (None: nothing met the budget) and why the search stopped."""

    budget: float | None
    floors: Floors
    reference_accuracy: float | None
    rule: str
    assumption: str
    probes: list[ProbeFacts]
    chosen: int | None
    stopped: str


@dataclass(frozen=True)
class Probe:
    """One setting applied, re-fitted and judged."""

    setting: Setting
    params: int
    quality: Quality
    within: bool
    misses: tuple[str, ...]

    def to_dict(self) -> ProbeFacts:
        return {"drop_layers": self.setting.drop, "prune_heads": self.setting.heads, "params": self.params,
                **_figures(self.quality), "within_budget": self.within, "misses": list(self.misses)}


def _figures(q: Quality) -> Figures:
    """A probe's figures (those it has) in the order the manifest has always written them."""
    figures = Figures()
    if q.cosine_mean is not None:
        figures["cosine_mean"] = q.cosine_mean
    if q.cosine_p5 is not None:
        figures["cosine_p5"] = q.cosine_p5
    if q.accuracy is not None:
        figures["accuracy"] = q.accuracy
    if q.agreement is not None:
        figures["agreement"] = q.agreement
    return figures


@dataclass(frozen=True)
class Found(Generic[ModelT]):
    """The search's outcome: the chosen setting (None: nothing met the budget), its model and facts."""

    setting: Setting | None
    model: ModelT | None
    facts: dict[str, Any] | None  # the chosen setting's pruning facts, as `apply` returned them
    probes: tuple[Probe, ...]
    stopped: str

    def to_dict(self, limit: Budget) -> SearchFacts:
        chosen = next((k for k, p in enumerate(self.probes) if p.setting == self.setting), None)
        return {"budget": limit.max_drop, "floors": {"min_cosine": limit.min_cosine,
                                                     "min_cosine_p5": limit.min_cosine_p5,
                                                     "min_agreement": limit.min_agreement},
                "reference_accuracy": limit.reference, "rule": limit.rule, "assumption": ASSUMPTION,
                "probes": [p.to_dict() for p in self.probes], "chosen": chosen, "stopped": self.stopped}


ASSUMPTION = ("quality after re-fit does not improve when one knob removes more with the other fixed; every "
              "setting that can be chosen is probed")

# (blocks dropped, head ratio) -> the slimmed and re-fitted model, and its pruning facts (with `params_after`)
Apply = Callable[[int, float], tuple[ModelT, dict[str, Any]]]


def search(apply: Apply[ModelT], judge: Callable[[ModelT], Quality], limit: Budget, rows: list[int],
           cols: list[float], max_probes: int = MAX_PROBES, progress: Callable[[str], None] = lambda line: None
           ) -> Found[ModelT]:
    """The staircase walk (module docstring): the fewest parameters left among the probes within budget."""
    probes: list[Probe] = []
    best: tuple[ModelT, dict[str, Any]] | None = None
    reached = -1  # index of the highest column within budget so far (implied for the current row)
    stopped = "walked the staircase of settings within budget"
    for drop in rows:
        while reached + 1 < len(cols):
            ratio = cols[reached + 1]
            if drop == 0 and ratio == 0.0:  # the source itself: within budget by definition, nothing to probe
                reached += 1
                continue
            if len(probes) >= max_probes:
                return _found(best, probes, f"stopped after {max_probes} probes")
            model, facts = apply(drop, ratio)
            quality = judge(model)
            misses = tuple(limit.misses(quality))
            probes.append(Probe(Setting(drop, ratio), int(facts["params_after"]), quality, not misses, misses))
            progress(f"Slimming: probe {len(probes)}: drop {drop} block(s), heads {ratio:g}: "
                     f"{'within' if not misses else 'over'} the budget")
            if misses:
                break
            reached += 1
            if best is None or probes[-1].params < best[1]["params_after"]:
                best = model, facts
        if reached == len(cols) - 1:
            break  # the rows left drop fewer blocks at ratios already within budget: less slimmed
    return _found(best, probes, stopped)


def _found(best: tuple[ModelT, dict[str, Any]] | None, probes: list[Probe], stopped: str) -> Found[ModelT]:
    if best is None:
        return Found(None, None, None, tuple(probes), stopped)
    chosen = min((p for p in probes if p.within), key=lambda p: p.params)
    return Found(chosen.setting, best[0], best[1], tuple(probes), stopped)


def _why_none(probes: Sequence[Probe]) -> str:
    """Why the search found nothing, in a clause: the mildest setting probed and the figures it missed, or that no
    setting removes anything (every layer's head count rounds its removal to 0 and no block can go)."""
    if not probes:
        return " (no setting removes anything from this encoder: nothing was probed)"
    mildest = max(probes, key=lambda p: p.params)
    return (f" (the mildest setting probed, drop {mildest.setting.drop} block(s) and heads "
            f"{mildest.setting.heads:g}, missed: {'; '.join(mildest.misses)})")


def judge_with(predict: Callable[[ModelT], np.ndarray], source: ModelT, labels: np.ndarray | None
               ) -> tuple[Callable[[ModelT], Quality], Quality]:
    """A judge comparing a model's first output with the source's on the same samples (`predict` runs a
    model on them), and the source's own quality (cosine 1; its accuracy with labels)."""
    reference = predict(source)
    rows = reference.reshape(-1, reference.shape[-1])
    top = reference.reshape(len(reference), -1).argmax(1)
    vector = reference.ndim == 2 and reference.shape[1] > 1  # class scores (or an embedding: judged alike)

    def judge(model: ModelT) -> Quality:
        y = predict(model)
        cos = cosine(rows, y.reshape(rows.shape))
        answers = y.reshape(len(y), -1).argmax(1)
        accuracy = None if labels is None else round(float(np.mean(answers == labels) * 100), 3)
        agreement = round(float(np.mean(answers == top)), 4) if vector else None
        return Quality(agreement=agreement, accuracy=accuracy, cosine_mean=cos["cosine_mean"],
                       cosine_p5=cos["cosine_p5"])

    return judge, judge(source)


def run(apply: Apply[ModelT], judge: Callable[[ModelT], Quality], reference: Quality, blocks: int,
        head_counts: Sequence[int], recipe: Recipe, progress: Callable[[str], None] = lambda line: None,
        kind: str = "class") -> tuple[ModelT, dict[str, Any]]:
    """Search the recipe's auto knob(s), then the slimmed model and its pruning block: the chosen setting's
    facts (from `apply`), the search, and a warning when nothing met the budget, saying which figure the mildest
    setting missed. Then the fallback is applied: the auto knobs at 0, a fixed knob as given (`apply(0, 0.0)`
    must return the model unchanged, with facts). `kind`: the output's kind (evaluate/output_kinds.py); only a
    class decision is held to top-1 agreement, an embedding is judged by its cosine alone.
    """
    drop, ratio = recipe.drop_layers, recipe.prune_heads
    assert "auto" in (drop, ratio), "a fixed setting needs no search"
    limit = budget(recipe.max_drop, reference.accuracy, recipe.min_cosine, recipe.min_cosine_p5,
                   top1=kind == "class" and not recipe.embedding)
    rows, cols = grid(blocks, head_counts, 0 if drop is None else drop, 0.0 if ratio is None else ratio)
    progress(f"Slimming: searching {len(rows)} drop count(s) x {len(cols)} head ratio(s) ({limit.rule})")
    found = search(apply, judge, limit, rows, cols, progress=progress)
    warnings = []
    if found.setting is None:
        fixed = (0 if drop in (None, "auto") else int(drop), 0.0 if ratio in (None, "auto") else float(ratio))
        model, facts = apply(*fixed)
        kept = "so nothing was removed" if fixed == (0, 0.0) else \
            f"so only the fixed setting was applied (drop {fixed[0]}, heads {fixed[1]:g})"
        warnings.append(f"pruning: no auto setting met the budget ({limit.rule}) after re-fit, {kept}"
                        f"{_why_none(found.probes)}; raise --max-drop, lower the cosine floor, or give "
                        "--drop-layers N / --prune-heads R")
    else:
        assert found.model is not None and found.facts is not None, "a chosen setting has its model"
        model, facts = found.model, found.facts
    return model, {**facts, "search": found.to_dict(limit), "warnings": warnings}
