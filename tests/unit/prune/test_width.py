"""A student's widths (prune/width.py): the rounding of each group's channels, and the auto bisection on tables."""

from __future__ import annotations

import pytest

from edgekiln.compiler.prune import cost, groups, importance
from edgekiln.compiler.prune import width as widths
from tests.unit.prune.test_groups import chain


@pytest.mark.parametrize(("channels", "width", "kept"), [
    (32, 0.5, 16), (64, 0.5, 32), (10, 0.25, 2), (3, 0.5, 1), (1, 0.25, 1), (8, 0.875, 7), (16, 1.0, 16),
    (7, 0.5, 3),  # 3.5 removed rounds half to even (4), as --prune 0.5 removes: 3 kept; 10 x 0.75 = 7.5 -> 8
])
def test_kept_is_what_uniform_pruning_keeps(channels, width, kept):
    assert widths.kept(channels, width) == kept
    assert channels - importance.removed_count(channels, 1 - width) == kept  # the same count as --prune 1-w


@pytest.mark.parametrize("width", [0.0, -0.5, 1.5])
def test_a_width_outside_0_1_is_refused(width):
    with pytest.raises(ValueError, match="width lies in"):
        widths.kept(8, width)


def test_the_plan_scales_every_prunable_group_and_keeps_the_layers():
    analysis = groups.analyze(chain())
    plan = widths.plan(analysis, importance.group_scores(analysis), 0.5)
    assert {g.producers: int(plan[g.id].sum()) for g in analysis.prunable} == {("a",): 4, ("b",): 8}
    # the output layer's 4 classes are not a prunable group: the student keeps them
    assert all("fc" not in g.producers for g in analysis.prunable)
    before, after = cost.cost(analysis), cost.cost(analysis, plan)
    # a (3 -> 8 -> 4): half; b (8 -> 16 -> 4, 8): a quarter; fc (16 -> 8 inputs): half
    assert after.macs == 16 * 4 * 27 + 16 * 8 * 4 * 9 + 8 * 4
    assert before.macs == 16 * 8 * 27 + 16 * 16 * 8 * 9 + 16 * 4


def _rule(table: dict[float, bool]):
    calls: list[float] = []

    def within(width: float) -> tuple[bool, float]:
        calls.append(width)
        return table[width], 0.0 if table[width] else 2.0

    return within, calls


def test_bisect_finds_the_narrowest_width_within_budget():
    table = {0.25: False, 0.375: False, 0.5: True, 0.625: True, 0.75: True, 0.875: True}
    within, calls = _rule(table)
    chosen, probes = widths.bisect(widths.AUTO_WIDTHS, within)
    assert chosen == 0.5
    assert calls == [0.5, 0.25, 0.375]  # halves the interval each probe
    assert [p.within for p in probes] == [True, False, False]


def test_bisect_gives_none_when_no_width_passes_and_the_narrowest_when_all_do():
    none, _ = _rule(dict.fromkeys(widths.AUTO_WIDTHS, False))
    assert widths.bisect(widths.AUTO_WIDTHS, none)[0] is None
    every, calls = _rule(dict.fromkeys(widths.AUTO_WIDTHS, True))
    assert widths.bisect(widths.AUTO_WIDTHS, every)[0] == 0.25
    assert calls == [0.5, 0.25]


def test_bisect_stops_after_max_probes_with_the_best_known_to_pass():
    table = {0.25: False, 0.375: False, 0.5: False, 0.625: False, 0.75: False, 0.875: True}
    within, calls = _rule(table)
    chosen, probes = widths.bisect(widths.AUTO_WIDTHS, within, max_probes=2)
    assert [p.width for p in probes] == [0.5, 0.75] and chosen is None  # both failed; 0.875 was never tried
    chosen, _ = widths.bisect(widths.AUTO_WIDTHS, _rule(table)[0], max_probes=4)
    assert chosen == 0.875
