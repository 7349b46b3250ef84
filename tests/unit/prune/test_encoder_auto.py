"""--drop-layers auto / --prune-heads auto: the staircase search over a table of qualities (numpy only)."""

from __future__ import annotations

import pytest

from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.prune import encoder_auto as auto
from edgekiln.compiler.prune.driver import QUANT_RESERVE
from edgekiln.compiler.recipe import Recipe

BLOCK, HEAD = 1000, 200  # parameters of one encoder block and of one head (4 heads a block, 3 blocks)
SOURCE = 3 * BLOCK + 500


def _params(drop: int, ratio: float) -> int:
    left = 3 - drop
    return SOURCE - drop * BLOCK - left * auto.heads_removed(4, ratio) * HEAD


def _cosines(mean: float, p5: float, **more: float) -> Quality:
    return Quality(cosine_mean=mean, cosine_p5=p5, **more)


class Table:
    """A fake encoder: apply() records the settings it is asked for, judge() reads the accuracy table."""

    def __init__(self, accuracy: dict[tuple[int, float], float], cosine: dict | None = None) -> None:
        self.accuracy, self.cosine, self.applied = accuracy, cosine or {}, []

    def apply(self, drop: int, ratio: float) -> tuple[tuple[int, float], dict]:
        self.applied.append((drop, ratio))
        return (drop, ratio), {"params_after": _params(drop, ratio), "params_before": SOURCE}

    def judge(self, model: tuple[int, float]) -> Quality:
        mean, p5 = self.cosine.get(model, (1.0, 1.0))
        return _cosines(mean, p5, accuracy=self.accuracy.get(model, 90.0))


def _monotone(drop_ok: int, heads_ok: dict[int, float]) -> dict[tuple[int, float], float]:
    """90 % (the source's) where drop <= drop_ok and the ratio <= heads_ok[drop], else 80 %."""
    return {(d, r): 90.0 if d <= drop_ok and r <= heads_ok.get(d, -1) else 80.0
            for d in range(3) for r in (0.0, 0.25, 0.5, 0.75)}


def _search(table: Table, limit: auto.Budget, drop: int | str = "auto", ratio: float | str = "auto"):
    rows, cols = auto.grid(3, [4, 4, 4], drop, ratio)
    return auto.search(table.apply, table.judge, limit, rows, cols)


LABELS = auto.budget(1.0, 90.0, None, None)


def test_the_budget_keeps_the_quantization_reserve_and_defaults_to_a_cosine_floor_without_labels():
    assert LABELS.max_drop == pytest.approx(1.0 * (1 - QUANT_RESERVE))
    plain = auto.budget(1.0, None, None, None)
    assert (plain.max_drop, plain.min_cosine, plain.min_cosine_p5, plain.min_agreement) == (None, 0.99, 0.95, 0.99)
    assert LABELS.min_agreement is None  # with labels, accuracy judges the answers
    assert plain.misses(_cosines(0.999, 0.999, agreement=0.97)) == ["top-1 agreement 0.9700 < 0.99"]
    assert plain.misses(_cosines(0.98, 0.999)) == ["cosine 0.9800 < 0.99"]  # no class vector
    given = auto.budget(1.0, None, 0.98, None)
    assert (given.min_cosine, given.min_cosine_p5) == (0.98, None)
    embeddings = auto.budget(1.0, None, 0.98, None, top1=False)  # --embedding: the cosine alone
    assert embeddings.min_agreement is None and embeddings.misses(_cosines(0.99, 0.99, agreement=0.5)) == []


def test_the_grid_leaves_out_ratios_that_remove_no_more_heads():
    assert auto.grid(3, [4, 4, 4], "auto", "auto") == ([2, 1, 0], [0.0, 0.25, 0.5, 0.75])
    assert auto.grid(3, [2, 2, 2], "auto", "auto") == ([2, 1, 0], [0.0, 0.5])  # 0.25 and 0.75 remove 0 and 1
    assert auto.grid(3, [4], "auto", 0.5) == ([2, 1], [0.5])  # the fixed knob is one column, 0 drops the fallback
    assert auto.grid(3, [4], 1, "auto") == ([1], [0.25, 0.5, 0.75])


@pytest.mark.parametrize("drop_ok, heads_ok", [(2, {2: 0.0, 1: 0.5, 0: 0.75}), (1, {1: 0.25, 0: 0.75}),
                                               (0, {0: 0.5}), (2, {2: 0.75}), (1, {1: 0.0, 0: 0.0})])
def test_the_most_slimmed_setting_within_budget_is_chosen_in_few_probes(drop_ok, heads_ok):
    table = Table(_monotone(drop_ok, heads_ok))
    found = _search(table, LABELS)
    feasible = [(d, r) for (d, r), a in table.accuracy.items() if a == 90.0 and (d, r) != (0, 0.0)]
    best = min(feasible, key=lambda s: _params(*s))
    assert found.setting is not None and (found.setting.drop, found.setting.heads) == best
    assert found.model == best and found.facts == {"params_after": _params(*best), "params_before": SOURCE}
    assert len(found.probes) == len(table.applied) <= 6  # rows + columns - 1, the source itself never probed
    assert (0, 0.0) not in table.applied
    assert all(p.within == (table.accuracy[(p.setting.drop, p.setting.heads)] == 90.0) for p in found.probes)


def test_a_cosine_floor_is_honoured_beside_the_accuracy_budget():
    accuracy = {(d, r): 90.0 for d in range(3) for r in (0.0, 0.25, 0.5, 0.75)}  # accuracy never moves
    cosine = {(d, r): (0.999, 0.98) if d == 0 and r <= 0.25 else (0.97, 0.9) for (d, r) in accuracy}
    found = _search(Table(accuracy, cosine), auto.budget(1.0, 90.0, 0.99, None))
    assert (found.setting.drop, found.setting.heads) == (0, 0.25)  # type: ignore[union-attr]
    assert any("cosine 0.9700 < 0.99" in p.misses for p in found.probes)
    without = _search(Table(accuracy, cosine), LABELS)  # no floor: labels alone, so the most slimmed
    assert (without.setting.drop, without.setting.heads) == (2, 0.75)  # type: ignore[union-attr]


def test_nothing_within_budget_removes_nothing_and_says_so():
    table = Table({(d, r): 50.0 for d in range(3) for r in (0.0, 0.25, 0.5, 0.75)})
    recipe = Recipe(source="m.keras", calib="c.npz", drop_layers="auto", prune_heads="auto")
    model, block = auto.run(table.apply, table.judge, _cosines(1.0, 1.0, accuracy=90.0), 3, [4, 4, 4], recipe)
    assert model == (0, 0.0) and table.applied[-1] == (0, 0.0)  # the fallback: the source, as apply gives it
    assert block["params_after"] == block["params_before"]
    assert block["search"]["chosen"] is None and block["search"]["budget"] == pytest.approx(0.7)
    assert len(block["search"]["probes"]) == 3  # each row misses at its first column
    assert "no auto setting met the budget" in block["warnings"][0] and "nothing was removed" in block["warnings"][0]


def test_with_one_knob_fixed_only_the_other_is_searched_and_the_fixed_one_is_the_fallback():
    table = Table(_monotone(1, {1: 0.5, 0: 0.5}))
    found = _search(table, LABELS, drop="auto", ratio=0.5)
    assert found.setting == auto.Setting(1, 0.5) and {r for _, r in table.applied} == {0.5}
    nothing = Table({(d, r): 0.0 for d in range(3) for r in (0.0, 0.25, 0.5, 0.75)})
    recipe = Recipe(source="m.keras", calib="c.npz", drop_layers="auto", prune_heads=0.5)
    model, block = auto.run(nothing.apply, nothing.judge, _cosines(1.0, 1.0, accuracy=90.0), 3, [4], recipe)
    assert model == (0, 0.5) and "only the fixed setting was applied (drop 0, heads 0.5)" in block["warnings"][0]


def test_the_probe_count_is_bounded_and_the_stop_recorded():
    table = Table(_monotone(2, {2: 0.75}))
    rows, cols = [5, 4, 3, 2, 1, 0], [0.0, 0.25, 0.5, 0.75]
    found = auto.search(table.apply, lambda m: _cosines(1.0, 1.0, accuracy=0.0), LABELS, rows, cols, max_probes=4)
    assert len(found.probes) == 4 and found.stopped == "stopped after 4 probes" and found.setting is None


class Agreeing(Table):
    """Judged without labels: the cosine stays high, the argmax over the vector flips on most samples (as it does
    for an embedding, where the argmax means nothing)."""

    def judge(self, model: tuple[int, float]) -> Quality:
        return _cosines(0.999, 0.995, agreement=1.0 if model == (0, 0.0) else 0.4)


def test_an_embedding_is_judged_by_its_cosine_alone_and_a_class_vector_also_by_top1():
    recipe = Recipe(source="m.onnx", calib="c.npz", prune_heads="auto")
    heads_only = Agreeing({})
    model, block = auto.run(heads_only.apply, heads_only.judge, _cosines(1.0, 1.0, agreement=1.0), 3, [4, 4, 4],
                            recipe, kind="embedding")
    assert model == (0, 0.75) and block["search"]["floors"]["min_agreement"] is None and not block["warnings"]
    as_class = Agreeing({})
    model, block = auto.run(as_class.apply, as_class.judge, _cosines(1.0, 1.0, agreement=1.0), 3, [4, 4, 4], recipe,
                            kind="class")
    assert model == (0, 0.0) and block["search"]["floors"]["min_agreement"] == 0.99


def test_pruning_nothing_says_which_figure_the_mildest_setting_missed():
    table = Table({}, cosine={(0, r): (0.97, 0.9) for r in (0.25, 0.5, 0.75)})
    recipe = Recipe(source="m.onnx", calib="c.npz", prune_heads="auto")
    _, block = auto.run(table.apply, table.judge, _cosines(1.0, 1.0), 3, [4, 4, 4], recipe, kind="embedding")
    assert "the mildest setting probed, drop 0 block(s) and heads 0.25, missed: cosine 0.9700 < 0.99" \
        in block["warnings"][0], block["warnings"]
    one_head = Table({})
    _, block = auto.run(one_head.apply, one_head.judge, _cosines(1.0, 1.0), 3, [1, 1, 1], recipe, kind="embedding")
    assert "no setting removes anything from this encoder" in block["warnings"][0] and one_head.applied == [(0, 0.0)]
