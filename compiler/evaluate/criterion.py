"""When a model is accurate enough (Criterion), and how two qualities rank (fidelity_key): pure logic over
Quality records, so the rule is unit-tested on tables.

"Accurate enough" is the accuracy budget (--max-drop) when labelled evaluation data was given, else a fidelity
floor on the judging samples (held back by cross-fitting when there are enough: data.Datasets.judged_by, which
describe() names); a cosine floor (--min-cosine, --min-cosine-p5) is the fidelity floor of embedding models
(see Criterion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edgekiln.compiler.evaluate import evidence
from edgekiln.compiler.evaluate.quality import Quality

if TYPE_CHECKING:
    from edgekiln.compiler.recipe import Recipe


class Faithfulness(Protocol):
    """What the criterion reads: a measured row, or a candidate's quality before it is timed."""

    @property
    def sqnr_db(self) -> float | None: ...
    @property
    def agreement(self) -> float | None: ...
    @property
    def accuracy_drop(self) -> float | None: ...
    @property
    def cosine_mean(self) -> float | None: ...
    @property
    def cosine_p5(self) -> float | None: ...
    @property
    def samples(self) -> int | None: ...
    @property
    def flips(self) -> int | None: ...
    @property
    def values_sqnr_db(self) -> float | None: ...
    @property
    def kinds(self) -> tuple[str, ...]: ...
    def interval(self, figure: str) -> tuple[float, float] | None: ...


# The embeddings' floor when the user gives none: a cosine of 0.99 to the source's vector keeps a nearest-neighbour
# ranking (the audio embedding: int8 0.994) while refusing a collapsed one (the detector's int8: 0.19).
DEFAULT_COSINE = 0.99


@dataclass(frozen=True)
class Criterion:
    """When a candidate is accurate enough.

    max_drop: the accuracy budget in points on labelled evaluation data; when given, it replaces the
        agreement and SQNR floors (labels measure the task itself, the floors only stand in for it).
    min_agreement / min_sqnr_db: the fidelity floor on the judging samples without labels.
    min_cosine / min_cosine_p5: a cosine floor, the mean and the 5th percentile of the per-vector cosine to
        the source's outputs (evaluate/metrics.cosine). When either is given:
        - it replaces the SQNR floor. SQNR 30 dB is a cosine of about 0.9995, far stricter than anything a
          user shipping sentence embeddings asks for, and means nothing to them;
        - top-1 agreement still applies to the class vectors: a classifier head whose answer changes on more
          than 1 % of inputs is not faithful, whatever its cosine (a pure embedding output is judged by it
          too, since the measure cannot tell an embedding from class scores: loud, never silent harm;
          `top1` False, from --embedding, is the user saying so);
        - with labels, the accuracy budget applies AND the cosine floor: both were asked for (the labels
          judge the head; whoever reads the embeddings relies on the floor), so neither is dropped silently.
        A row without cosine figures (no output with a vector axis) does not meet a cosine floor; a build
        refuses the floor for such a model before any work (measure.check_cosine_floor).
    """

    max_drop: float | None = None
    min_agreement: float = 0.99
    min_sqnr_db: float = 30.0
    min_cosine: float | None = None
    min_cosine_p5: float | None = None
    top1: bool = True  # False (--embedding): the outputs are embeddings, judged by the cosine floor alone
    by_kind: bool = False  # a build's rule (criterion_for): rows are judged per output kind, with intervals
    # Which samples the rows were judged on, in the manifest's words (data.CROSS_FITTED, EVALUATION,
    # NOT_HELD_BACK: Datasets.judged_by), for describe(); rules on constructed tables name none.
    samples: str = "the judging"

    @property
    def by_cosine(self) -> bool:
        return self.min_cosine is not None or self.min_cosine_p5 is not None

    def meets(self, row: Faithfulness) -> bool:
        if self.max_drop is not None:
            within = row.accuracy_drop is not None and bool(row.accuracy_drop <= self.max_drop)
            return within and self._cosine_ok(row)
        if row.kinds:
            return not self._shown_worse(row)
        agreement_ok = not self.top1 or row.agreement is None or bool(row.agreement >= self.min_agreement)
        floor_ok = self._cosine_ok(row) if self.by_cosine else bool(_sqnr(row) >= self.min_sqnr_db)
        return agreement_ok and floor_ok

    # --- judged by output kind, with intervals (a row measured by evaluate/judge.py) -------------------------

    def _shown_worse(self, row: Faithfulness) -> list[str]:
        """The floors the evidence shows the row below (one-sided 95 %), in words; none: it meets them.
        class outputs: the flip rate's lower bound above 1 - min_agreement; embeddings (or any vector output
        under a cosine floor given): a cosine's upper bound below its floor; value outputs: SQNR's upper bound
        below min_sqnr_db."""
        worse = []
        if "class" in row.kinds and row.agreement is not None:
            flips, n = row.flips, row.samples
            shown = evidence.flip_rate_low(flips, n) > 1 - self.min_agreement if flips is not None and n else \
                row.agreement < self.min_agreement
            if shown:
                worse.append(f"top-1 agreement {row.agreement:.3f} ({flips} of {n} samples changed class)")
        for name, floor, value, figure in self._cosine_floors(row):
            if value is None or _upper(row, figure, value) < floor:
                worse.append(f"{name} {'unmeasured' if value is None else f'{value:.6g}'} < {floor:g}")
        if "values" in row.kinds:
            sqnr = math.inf if row.values_sqnr_db is None else row.values_sqnr_db
            if _upper(row, "values_sqnr_db", sqnr) < self.min_sqnr_db:
                worse.append(f"SQNR of values {sqnr:.1f} dB < {self.min_sqnr_db:g}")
        return worse

    def _cosine_floors(self, row: Faithfulness) -> list[tuple[str, float, float | None, str]]:
        """(name, floor, value, figure) of the cosine floors that apply: the user's (--min-cosine,
        --min-cosine-p5) on the vector outputs, else DEFAULT_COSINE on the mean of the embedding outputs."""
        if self.by_cosine:
            return [(name, floor, value, figure) for name, floor, value, figure in
                    (("cosine mean", self.min_cosine, row.cosine_mean, "cosine_mean"),
                     ("cosine p5", self.min_cosine_p5, row.cosine_p5, "cosine_p5")) if floor is not None]
        if "embedding" in row.kinds:
            return [("cosine mean", DEFAULT_COSINE, row.cosine_mean, "cosine_mean")]
        return []

    def weak(self, row: Faithfulness) -> str | None:
        """Where the row meets the floors only because its samples are too few to show otherwise: the one-sided
        95 % bound reaches past a floor. None when the evidence is clear (or the row has no intervals)."""
        if not row.kinds or self.max_drop is not None or not self.meets(row):
            return None
        n = row.samples or 0
        if "class" in row.kinds and row.flips is not None and n:
            slack = 1 - self.min_agreement
            if evidence.flip_rate_high(row.flips, n) > slack:
                return (f"weak evidence: {n} samples judged; {evidence.samples_to_tell(slack)} samples without a "
                        f"class change would show it changes on at most {slack:.0%} of inputs")
        for name, floor, value, figure in self._cosine_floors(row):
            interval = row.interval(figure)
            if value is not None and interval is not None and interval[0] < floor:
                return f"weak evidence: {n} samples judged; the {name}'s 95 % interval reaches below {floor:g}"
        interval = row.interval("values_sqnr_db")
        if "values" in row.kinds and interval is not None and interval[0] < self.min_sqnr_db:
            return f"weak evidence: {n} samples judged; the SQNR's 95 % interval reaches below {self.min_sqnr_db:g} dB"
        return None

    def same_fidelity(self, a: Faithfulness, b: Faithfulness) -> bool:
        """Whether the evidence cannot tell two rows' fidelity apart: every figure the rule reads has
        overlapping 95 % intervals (rows without intervals: equal figures)."""
        if not (a.kinds and b.kinds):
            return self.faithfulness(a) == self.faithfulness(b)
        figures = [f for f in ("agreement", "cosine_mean", "cosine_p5", "values_sqnr_db")
                   if a.interval(f) is not None and b.interval(f) is not None]
        return all(_overlap(a.interval(f), b.interval(f)) for f in figures)

    # --- the figures alone (labelled builds, and rows recorded before output kinds) -----------------------

    def _cosine_ok(self, row: Faithfulness) -> bool:
        """Every cosine floor given holds (True when none is given)."""
        return all(floor is None or (value is not None and bool(value >= floor))
                   for floor, value in self._cosines(row))

    def _cosines(self, row: Faithfulness) -> tuple[tuple[float | None, float | None], ...]:
        return (self.min_cosine, row.cosine_mean), (self.min_cosine_p5, row.cosine_p5)

    def faithfulness(self, row: Faithfulness) -> tuple[float, ...]:
        """Larger is more faithful by what this criterion reads: with a cosine floor the cosine (5th
        percentile first: the tail is what breaks a nearest-neighbour search), then SQNR; else SQNR."""
        if not self.by_cosine:
            return (_sqnr(row),)
        return (_or_tie(row.cosine_p5), _or_tie(row.cosine_mean), _sqnr(row))

    def describe(self) -> str:
        if self.max_drop is not None:
            budget = f"accuracy drop <= {self.max_drop:g} points on the labelled evaluation data"
            return budget + (f" and {self._cosine_floor()} on {self.samples} samples" if self.by_cosine else "")
        if not self.by_kind:
            return self._describe_figures()
        embeddings = self._cosine_floor() if self.by_cosine else f"cosine mean >= {DEFAULT_COSINE:g} (the default)"
        return (f"each output by its kind, on {self.samples} samples: the class changes on at most "
                f"{1 - self.min_agreement:.0%} of inputs (top-1 agreement >= {self.min_agreement:g}); embeddings "
                f"{embeddings}; values SQNR >= {self.min_sqnr_db:g} dB; a floor fails only when the evidence "
                "shows it missed (one-sided 95 %)")

    def _describe_figures(self) -> str:
        """The rule on the figures alone (rows without output kinds)."""
        floor = self._cosine_floor() if self.by_cosine else f"SQNR >= {self.min_sqnr_db:g} dB"
        if not self.top1:
            return f"{floor} on {self.samples} samples (embedding outputs: no top-1 agreement)"
        return f"top-1 agreement >= {self.min_agreement:g} and {floor} on {self.samples} samples"

    def _cosine_floor(self) -> str:
        parts = [f"{name} >= {floor:g}" for name, floor in (("cosine mean", self.min_cosine),
                                                            ("cosine p5", self.min_cosine_p5)) if floor is not None]
        return " and ".join(parts)

    def shortfall(self, row: Faithfulness) -> str:
        """Why a row does not meet the criterion, in a few words."""
        cosine = self._cosine_shortfall(row)
        if self.max_drop is None and row.kinds:
            return ", ".join(self._shown_worse(row)) + ": below the fidelity floor"
        if self.max_drop is not None:
            drop = "no accuracy" if row.accuracy_drop is None else f"accuracy drops {row.accuracy_drop:.2f} points"
            return f"{drop} (budget {self.max_drop:g})" + (f"; {cosine}: below the cosine floor" if cosine else "")
        agreement = "" if row.agreement is None or not self.top1 else f"top-1 agreement {row.agreement:.3f}, "
        if self.by_cosine:  # the agreement, and the cosine figures that missed (none: the agreement did)
            low = self.top1 and row.agreement is not None and row.agreement < self.min_agreement
            agreement = agreement.removesuffix(", ") + (f" < {self.min_agreement:g}" if low else "")
            return ", ".join(part for part in (agreement, cosine) if part) + ": below the fidelity floor"
        sqnr = "inf" if row.sqnr_db is None else f"{row.sqnr_db:.1f} dB"
        return f"{agreement}SQNR {sqnr}: below the fidelity floor"

    def miss(self, row: Faithfulness) -> str:
        """How a row misses the criterion, in two words (the CLI table)."""
        over = self.max_drop is not None and (row.accuracy_drop is None or row.accuracy_drop > self.max_drop)
        return "over budget" if over else "below floor"

    def _cosine_shortfall(self, row: Faithfulness) -> str:
        """The cosine figures that miss their floor ('' when none does)."""
        names = ("cosine mean", "cosine p5")
        missed = [f"{name} {'unmeasured' if value is None else f'{value:.6g}'} < {floor:g}"
                  for name, (floor, value) in zip(names, self._cosines(row), strict=True)
                  if floor is not None and (value is None or value < floor)]
        return ", ".join(missed)


def criterion_for(recipe: Recipe, labelled: bool, samples: str = "the judging") -> Criterion:
    """A build's rule from its recipe: the accuracy budget when the evaluation data is labelled (else the
    fidelity floor), and the recipe's cosine floor either way. samples: which samples it judges on
    (Datasets.judged_by), as describe() says."""
    return Criterion(max_drop=recipe.max_drop if labelled else None, min_cosine=recipe.min_cosine,
                     min_cosine_p5=recipe.min_cosine_p5, top1=not recipe.embedding, by_kind=True, samples=samples)



def rank(quality: Quality, criterion: Criterion) -> tuple[bool | float, ...]:
    """How calibration trials and refinements are ranked, both formats alike: meets the criterion, then
    fidelity_key by what the criterion reads."""
    return (criterion.meets(quality), *fidelity_key(quality, criterion))


def fidelity_key(quality: Faithfulness, criterion: Criterion | None = None) -> tuple[float, ...]:
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


def _upper(row: Faithfulness, figure: str, value: float) -> float:
    """A figure's upper 95 % bound where its interval was measured, else the figure itself."""
    interval = row.interval(figure)
    return value if interval is None else max(value, interval[1])


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is None or b is None or (a[0] <= b[1] and b[0] <= a[1])


def _sqnr(row: Faithfulness) -> float:
    return math.inf if row.sqnr_db is None else row.sqnr_db


def _or_tie(value: float | None) -> float:
    """A figure no row has (no vector output) ranks alike in every row."""
    return -math.inf if value is None else value
