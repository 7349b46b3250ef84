"""The int8+mixed rule on tables (search/mixed_precision.py): which Concat keeps its inputs apart, how probed layers
rank, and how many are promoted (no converter, no runtime)."""

from __future__ import annotations

from onnx import helper

from edgekiln.compiler.search.mixed_precision import CONCAT_SPREAD, STEPS, Probe, concats_apart, ranked, stepped


def _probe(layer: str, gain: float) -> Probe:
    return Probe(layer, "Conv", "blamed", gain)


def test_only_layers_that_gained_rank_best_first_ties_in_diagnosis_order() -> None:
    probes = [_probe("a", 0.0), _probe("b", 3.0), _probe("c", -1.0), _probe("d", 9.0), _probe("e", 3.0)]
    assert [p.layer for p in ranked(probes)] == ["d", "b", "e"]


def test_steps_promote_1_2_4_8_until_the_criterion_holds() -> None:
    helpful = [_probe(f"l{i}", 10.0 - i) for i in range(10)]
    sqnr = {1: 12.0, 2: 18.0, 4: 26.0, 8: 31.0}  # dB measured with that many layers promoted
    measured: list[tuple[str, ...]] = []

    def measure(layers: tuple[str, ...]) -> float:
        measured.append(layers)
        return sqnr[len(layers)]

    steps = stepped(helpful, measure, lambda db: db >= 25.0)
    assert [len(layers) for layers, _ in steps] == [1, 2, 4] and steps[-1] == (("l0", "l1", "l2", "l3"), 26.0)
    assert measured == [layers for layers, _ in steps]  # each step measured once, the best layers first


def test_steps_stop_when_every_helpful_layer_is_promoted_even_short_of_the_criterion() -> None:
    helpful = [_probe("a", 5.0), _probe("b", 1.0), _probe("c", 0.5)]
    steps = stepped(helpful, lambda layers: float(len(layers)), lambda _: False)
    assert [layers for layers, _ in steps] == [("a",), ("a", "b"), ("a", "b", "c")]
    many = [_probe(str(i), 1.0) for i in range(20)]
    assert [len(layers) for layers, _ in stepped(many, lambda layers: 0.0, lambda _: False)] == list(STEPS)


def test_a_concat_of_ranges_wider_apart_than_the_spread_is_kept_apart() -> None:
    nodes = [helper.make_node("Concat", ["boxes", "scores"], ["joined"], name="detections", axis=1),
             helper.make_node("Concat", ["a", "b"], ["ab"], name="similar", axis=1),
             helper.make_node("Add", ["boxes", "scores"], ["sum"], name="not_a_concat")]
    ranges = {"boxes": (0.0, 320.0), "scores": (0.01, 0.99), "a": (-1.0, 2.0), "b": (0.0, 2.0 * CONCAT_SPREAD)}
    apart = concats_apart(nodes, ranges)
    assert [(a.node, a.outputs) for a in apart] == [("detections", ("joined",))]
    assert "323x" in apart[0].reason  # 320 / 0.99
