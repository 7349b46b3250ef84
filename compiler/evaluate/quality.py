"""Quality: how faithful a model is to the source and how accurate it is, the one record of it every stage
uses (the candidate search, pruning, the encoder search and scan, the sweep), and its one wording."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quality:
    """A model's figures against the source model's outputs on the judging samples, and with labels.

    sqnr_db: the worst output's SQNR (None: reproduced exactly, infinite). agreement: top-1 agreement of the
    class vectors (None: no class vector). accuracy / accuracy_drop: labelled accuracy in percent and its drop
    from the source's, in points (None: no labels). cosine_mean / cosine_p5: per-vector cosine to the source's
    outputs, mean and 5th percentile (None: no output has a vector axis).

    Judged by output kind (evaluate/output_kinds.py; `kinds` the kinds present, empty for a record made before
    kinds, which the criterion reads by its figures alone): agreement is the class outputs', with `flips` of
    `samples`; the cosines the embeddings'; values_sqnr_db the value outputs' SQNR (None with "values" in kinds:
    exact). `intervals`: each figure's 95 % interval, (figure, low, high).
    """

    sqnr_db: float | None = None
    agreement: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    cosine_mean: float | None = None
    cosine_p5: float | None = None
    samples: int | None = None
    flips: int | None = None
    values_sqnr_db: float | None = None
    kinds: tuple[str, ...] = ()
    intervals: tuple[tuple[str, float, float], ...] = ()

    def interval(self, figure: str) -> tuple[float, float] | None:
        """The 95 % interval of a figure (agreement, cosine_mean, cosine_p5, values_sqnr_db), if measured."""
        return next(((low, high) for name, low, high in self.intervals if name == figure), None)

    def to_dict(self) -> dict[str, float]:
        """The figures it has (None left out), as the manifest writes them; the kinds and intervals are the
        candidate row's (Candidate.to_row)."""
        return {k: v for k, v in vars(self).items() if v is not None and k not in ("kinds", "intervals")}

    @classmethod
    def from_dict(cls, figures: Mapping[str, Any]) -> Quality:
        """The record from a manifest row or a to_dict() (other keys ignored)."""
        intervals = figures.get("intervals") or {}
        return cls(**{k: figures.get(k) for k in ("sqnr_db", "agreement", "accuracy", "accuracy_drop",
                                                   "cosine_mean", "cosine_p5", "samples", "flips",
                                                   "values_sqnr_db")},
                   kinds=tuple(figures.get("kinds") or ()),
                   intervals=tuple((name, float(v[0]), float(v[1])) for name, v in intervals.items() if len(v) == 2))


def describe(quality: Quality, cosine: bool = False) -> str:
    """The figures in words, most telling first: the accuracy drop, top-1 agreement, SQNR, and (cosine: the
    figures a cosine floor reads) the cosines."""
    parts = [] if quality.accuracy_drop is None else [f"accuracy drop {quality.accuracy_drop:.2f} points"]
    parts += [] if quality.agreement is None else [f"top-1 agreement {quality.agreement:.3f}"]
    parts += [] if quality.sqnr_db is None else [f"SQNR {quality.sqnr_db:.1f} dB"]
    if cosine and quality.cosine_mean is not None and quality.cosine_p5 is not None:
        parts.append(f"cosine {quality.cosine_mean:.6g} (p5 {quality.cosine_p5:.6g})")
    return ", ".join(parts) or "no figures"
