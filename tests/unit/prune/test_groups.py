"""Coupling rules and groups on hand-built channel graphs, one per topology (no framework needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.prune import cost, groups
from edgekiln.compiler.prune.channels import CHANNELS_FIRST, ChannelGraph, Node

RNG = np.random.default_rng(0)


def inp(name: str, c: int) -> Node:
    return Node(name, "Input", (), c, kernel=0)


def conv(name: str, src: str, c: int, cin: int, k: int = 9, spatial: int = 16, bias: bool = True) -> Node:
    return Node(name, "Conv2D", (src,), c, spatial, k, bias, weight=RNG.normal(size=(c, cin * k)))


def dense(name: str, src: str, c: int, cin: int) -> Node:
    return Node(name, "Dense", (src,), c, 1, 1, True, weight=RNG.normal(size=(c, cin)))


def bn(name: str, src: str, c: int) -> Node:
    return Node(name, "BatchNormalization", (src,), c, 16, 0, per_channel_params=4, scale=RNG.random(c))


def op(name: str, kind: str, srcs: tuple[str, ...], c: int, spatial: int = 16) -> Node:
    return Node(name, kind, srcs, c, spatial, 0)


def drop(analysis: groups.Analysis, producer: str, *channels: int) -> dict[int, np.ndarray]:
    group = analysis.group_of(producer)
    keep = np.ones(group.channels, dtype=bool)
    keep[list(channels)] = False
    return {group.id: keep}


def chain() -> ChannelGraph:
    return ChannelGraph((inp("x", 3), conv("a", "x", 8, 3), bn("bn", "a", 8), op("relu", "ReLU", ("bn",), 8),
                         conv("b", "relu", 16, 8), op("gap", "GlobalAveragePooling2D", ("b",), 16, 1),
                         dense("fc", "gap", 4, 16)), ("fc",))


def test_chain_groups_and_masks():
    analysis = groups.analyze(chain())
    assert [g.producers for g in analysis.prunable] == [("a",), ("b",)]
    plan = drop(analysis, "a", 1, 5)
    assert analysis.mask("relu", plan).tolist() == [True, False, True, True, True, False, True, True]
    assert analysis.mask("b", plan).all() and analysis.mask("x", plan).all()


def test_chain_cost_drops_by_the_hand_count():
    analysis = groups.analyze(chain())
    before, after = cost.cost(analysis), cost.cost(analysis, drop(analysis, "a", 1, 5))
    # a loses 2 filters (3*9 weights + 1 bias each), bn 2*4 params, b loses 2 input channels (9 weights x 16)
    assert before.params - after.params == 2 * (27 + 1) + 2 * 4 + 2 * 9 * 16
    assert before.macs - after.macs == 16 * 2 * 27 + 16 * 2 * 16 * 9


def test_gap_to_dense_couples_the_last_conv_to_dense_inputs():
    analysis = groups.analyze(chain())
    plan = drop(analysis, "b", 0, 15)
    assert analysis.mask("gap", plan).sum() == 14
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == 2 * (8 * 9 + 1) + 2 * 4


def test_model_input_and_output_are_never_prunable():
    analysis = groups.analyze(chain())
    fc = analysis.group_of("fc")
    assert not fc.prunable and "model output fc" in fc.blocked
    assert any("model input x" in g.blocked for g in analysis.groups)


def test_residual_add_ties_both_branches():
    graph = ChannelGraph((inp("x", 3), conv("a", "x", 8, 3), op("r", "ReLU", ("a",), 8), conv("b", "r", 8, 8),
                          op("add", "Add", ("r", "b"), 8), conv("c", "add", 4, 8)), ("c",))
    analysis = groups.analyze(graph)
    tied = analysis.group_of("a")
    assert tied.producers == ("a", "b") and tied.prunable
    plan = drop(analysis, "b", 2)
    assert analysis.mask("a", plan).sum() == analysis.mask("add", plan).sum() == 7
    # a loses a filter (3*9 + 1); b goes from 8x8 to 7x7 channels (9 weights each, + biases); c loses an input
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == 28 + (8 * 8 * 9 + 8 - 7 * 7 * 9 - 7) + 36


def test_concat_offsets_map_to_each_input():
    graph = ChannelGraph((inp("x", 3), conv("a", "x", 4, 3), conv("b", "x", 6, 3),
                          op("cat", "Concatenate", ("a", "b"), 10), conv("c", "cat", 5, 10)), ("c",))
    analysis = groups.analyze(graph)
    plan = {**drop(analysis, "a", 1), **drop(analysis, "b", 0)}
    assert analysis.mask("cat", plan).tolist() == [True, False, True, True, False, True, True, True, True, True]


def test_depthwise_separable_block_passes_channels_through():
    graph = ChannelGraph((inp("x", 3), conv("a", "x", 8, 3, k=1), bn("bn1", "a", 8),
                          Node("dw", "DepthwiseConv2D", ("bn1",), 8, 16, 9, per_channel_params=10),
                          bn("bn2", "dw", 8), op("r", "ReLU", ("bn2",), 8), conv("pw", "r", 16, 8, k=1)), ("pw",))
    analysis = groups.analyze(graph)
    assert [g.producers for g in analysis.prunable] == [("a",)]
    plan = drop(analysis, "a", 0, 1, 2)
    # per channel: a's filter 3+1, two BNs 4+4, depthwise 9+1, pw's input row 16
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == 3 * (4 + 8 + 10 + 16)
    assert cost.cost(analysis).macs - cost.cost(analysis, plan).macs == 3 * 16 * (3 + 9 + 16)


@pytest.mark.parametrize("layout,expected", [("channels_last", [True, False] * 4),
                                             (CHANNELS_FIRST, [True] * 4 + [False] * 4)])
def test_flatten_expands_each_channel_over_positions(layout, expected):
    graph = ChannelGraph((inp("x", 1), conv("a", "x", 2, 1, spatial=4), Node("flat", "Flatten", ("a",), 8, 4, 0),
                          dense("fc", "flat", 3, 8)), ("fc",), layout=layout)
    analysis = groups.analyze(graph)
    plan = drop(analysis, "a", 1)
    assert analysis.mask("flat", plan).tolist() == expected
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == (9 + 1) + 4 * 3


def test_unknown_op_blocks_the_groups_it_touches_and_says_why():
    graph = ChannelGraph((inp("x", 3), conv("a", "x", 8, 3), op("odd", "Reshape", ("a",), 8),
                          conv("b", "odd", 8, 8), conv("c", "b", 4, 8)), ("c",))
    analysis = groups.analyze(graph)
    assert [g.producers for g in analysis.prunable] == [("b",)]
    assert analysis.group_of("a").blocked == ("Reshape odd has no coupling rule",)
    assert [g.label for g in analysis.blocked] == ["a", "c"]


def test_a_tie_over_concatenated_channels_is_blocked():
    graph = ChannelGraph((inp("x", 3), conv("a", "x", 2, 3), conv("b", "x", 2, 3), conv("c", "x", 4, 3),
                          op("cat", "Concatenate", ("a", "b"), 4), op("add", "Add", ("cat", "c"), 4),
                          conv("d", "add", 4, 4)), ("d",))
    analysis = groups.analyze(graph)
    assert {g.label for g in analysis.prunable} == set()
    assert "ties concatenated/flattened channels" in analysis.group_of("c").blocked[0]


def test_adapter_fixed_tensors_are_blocked():
    base = chain()
    graph = ChannelGraph(base.nodes, base.outputs, fixed=(("b", "softmax across b"),))
    assert groups.analyze(graph).group_of("b").blocked == ("softmax across b",)


def test_nodes_out_of_order_are_refused():
    with pytest.raises(ValueError, match="topological order"):
        groups.analyze(ChannelGraph((conv("a", "x", 8, 3), inp("x", 3)), ("a",)))
