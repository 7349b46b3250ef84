"""The refinement guard: a refined int8 candidate never less faithful than what it refines."""

from __future__ import annotations

from edgekiln.compiler.evaluate import evidence
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.search.faithful import never_less_faithful


def test_a_lower_agreement_is_dropped_even_with_a_higher_sqnr() -> None:
    """The real CIFAR CNN of issue 17: int8+rewrites 0.56 / 11.8 dB against plain int8 0.68 / 11.2 dB."""
    why = never_less_faithful(Quality(11.8, 0.56), Quality(11.2, 0.68), "int8", 25)
    assert why == ("dropped: less faithful than int8 on the 25 tuning samples (top-1 agreement 0.560, SQNR 11.8 dB "
                   "vs top-1 agreement 0.680, SQNR 11.2 dB)")


def test_equal_or_better_refinements_stand() -> None:
    assert never_less_faithful(Quality(30.0, 0.96), Quality(11.2, 0.68), "int8", 25) == ""
    assert never_less_faithful(Quality(11.2, 0.68), Quality(11.2, 0.68), "int8", 25) == ""
    assert never_less_faithful(Quality(12.0, 0.68), Quality(11.2, 0.68), "int8", 25) == ""


def test_at_equal_agreement_sqnr_decides() -> None:
    assert never_less_faithful(Quality(20.0, 1.0), Quality(25.0, 1.0), "int8+rewrites", 8).startswith(
        "dropped: less faithful than int8+rewrites on the 8 tuning samples")


def test_without_classes_sqnr_alone_decides() -> None:
    assert never_less_faithful(Quality(20.0, None), Quality(19.0, None), "int8", 8) == ""
    assert never_less_faithful(Quality(18.0, None), Quality(19.0, None), "int8", 8) == \
        "dropped: less faithful than int8 on the 8 tuning samples (SQNR 18.0 dB vs SQNR 19.0 dB)"


def test_the_accuracy_drop_comes_first_when_labels_are_there() -> None:
    assert never_less_faithful(Quality(10.0, 0.5, 0.9, 0.01), Quality(30.0, 0.9, 0.8, 0.11), "int8", 8) == ""
    assert never_less_faithful(Quality(30.0, 0.9, 0.8, 0.11), Quality(10.0, 0.5, 0.9, 0.01), "int8", 8) != ""


def _judged(sqnr: float, flips: int, samples: int = 64) -> Quality:
    """A class output's figures as the judge records them: agreement with its flips' 95 % interval."""
    low, high = evidence.flip_interval(flips, samples)
    return Quality(sqnr, 1 - flips / samples, samples=samples, flips=flips, kinds=("class",),
                   intervals=(("agreement", 1 - high, 1 - low),))


def test_a_margin_the_intervals_cannot_show_drops_nothing() -> None:
    """The hard-swish model's int8+fallback against int8+rewrites: 39.3 vs 39.6 dB, no flip on either side. The
    rule reads agreement for a class output, and 0 vs 0 flips (or 1 vs 0) on 64 samples is a tie."""
    assert never_less_faithful(_judged(39.3, 0), _judged(39.6, 0), "int8+rewrites", 64, Criterion(by_kind=True)) == ""
    assert never_less_faithful(_judged(39.3, 1), _judged(39.6, 0), "int8+rewrites", 64) == ""


def test_a_difference_the_intervals_show_still_drops() -> None:
    """20 of 64 samples changing class against none: the intervals do not overlap, the refinement goes."""
    why = never_less_faithful(_judged(30.0, 20), _judged(25.0, 0), "int8", 64, Criterion(by_kind=True))
    assert why.startswith("dropped: less faithful than int8 on the 64 tuning samples, beyond the 95 % intervals "
                          "(top-1 agreement 0.688, SQNR 30.0 dB vs top-1 agreement 1.000, SQNR 25.0 dB")
