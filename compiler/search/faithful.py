"""The guard every int8 refinement passes: it is never less faithful than what it refines.

A refinement (int8+rewrites refines int8, int8+fallback refines int8+rewrites, int8+fallback+layers refines
int8+fallback) exists to be better; one that ends worse on the tuning samples is dropped with its reason, so
the table never shows a "refined" int8 below plain int8. Compared in order: the accuracy drop (when the tuning
samples are labelled), then top-1 agreement, then SQNR: a higher SQNR does not excuse a lower agreement
(a real CNN's rewrites gave 11.8 dB vs 11.2 dB with agreement 0.56 vs 0.68). Judged by a cosine floor, the
cosines come before the agreement (judge.fidelity_key).

"Worse" is what the evidence shows, by the rule the choice uses (Criterion.same_fidelity): where every figure
the rule reads has overlapping 95 % intervals the two are a tie in fidelity and the refinement stands (before,
any margin dropped one: the hard-swish model's int8+fallback went for 39.3 vs 39.6 dB against int8+rewrites).
Figures without intervals (records made before output kinds) are compared as they are.
"""

from __future__ import annotations

from edgekiln.compiler.evaluate.criterion import Criterion, fidelity_key
from edgekiln.compiler.evaluate.quality import Quality, describe


def never_less_faithful(refined: Quality, base: Quality, base_name: str, samples: int,
                        criterion: Criterion | None = None) -> str:
    """'' when `refined` is at least as faithful as `base` (by what `criterion` reads: judge.fidelity_key), or
    the evidence cannot tell them apart (their intervals overlap); else the reason it is dropped."""
    if fidelity_key(refined, criterion) >= fidelity_key(base, criterion):
        return ""
    if (criterion or Criterion()).same_fidelity(refined, base) and refined.kinds and base.kinds:
        return ""
    cosine = criterion is not None and criterion.by_cosine
    beyond = ", beyond the 95 % intervals" if refined.kinds and base.kinds else ""
    return f"dropped: less faithful than {base_name} on the {samples} tuning samples{beyond} " \
           f"({describe(refined, cosine)} vs {describe(base, cosine)})"
