"""When a model is accurate enough (Criterion), and how two qualities rank (fidelity_key): pure logic over
Quality records, so the rule is unit-tested on tables.

"Accurate enough" is the accuracy budget (--max-drop) when labelled evaluation data was given, else a fidelity
floor on held-back calibration samples; a cosine floor (--min-cosine, --min-cosine-p5) is the fidelity floor of
embedding models (see Criterion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

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


@dataclass(frozen=True)
class Criterion:
    """When a candidate is accurate enough.

    max_drop: the accuracy budget in points on labelled evaluation data; when given, it replaces the
        agreement and SQNR floors (labels measure the task itself, the floors only stand in for it).
    min_agreement / min_sqnr_db: the fidelity floor on held-back samples without labels.
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

    @property
    def by_cosine(self) -> bool:
        return self.min_cosine is not None or self.min_cosine_p5 is not None

    def meets(self, row: Faithfulness) -> bool:
        if self.max_drop is not None:
            within = row.accuracy_drop is not None and bool(row.accuracy_drop <= self.max_drop)
            return within and self._cosine_ok(row)
        agreement_ok = not self.top1 or row.agreement is None or bool(row.agreement >= self.min_agreement)
        floor_ok = self._cosine_ok(row) if self.by_cosine else bool(_sqnr(row) >= self.min_sqnr_db)
        return agreement_ok and floor_ok

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
            return budget + (f" and {self._cosine_floor()} on held-back samples" if self.by_cosine else "")
        floor = self._cosine_floor() if self.by_cosine else f"SQNR >= {self.min_sqnr_db:g} dB"
        if not self.top1:
            return f"{floor} on held-back samples (embedding outputs: no top-1 agreement)"
        return f"top-1 agreement >= {self.min_agreement:g} and {floor} on held-back samples"

    def _cosine_floor(self) -> str:
        parts = [f"{name} >= {floor:g}" for name, floor in (("cosine mean", self.min_cosine),
                                                            ("cosine p5", self.min_cosine_p5)) if floor is not None]
        return " and ".join(parts)

    def shortfall(self, row: Faithfulness) -> str:
        """Why a row does not meet the criterion, in a few words."""
        cosine = self._cosine_shortfall(row)
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


def criterion_for(recipe: Recipe, labelled: bool) -> Criterion:
    """A build's rule from its recipe: the accuracy budget when the evaluation data is labelled (else the
    fidelity floor), and the recipe's cosine floor either way."""
    return Criterion(max_drop=recipe.max_drop if labelled else None, min_cosine=recipe.min_cosine,
                     min_cosine_p5=recipe.min_cosine_p5, top1=not recipe.embedding)



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


def _sqnr(row: Faithfulness) -> float:
    return math.inf if row.sqnr_db is None else row.sqnr_db


def _or_tie(value: float | None) -> float:
    """A figure no row has (no vector output) ranks alike in every row."""
    return -math.inf if value is None else value
