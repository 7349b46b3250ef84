"""Structured pruning of tiny ONNX models (built with onnx.helper, run with the real onnxruntime).

No TensorFlow: the ONNX half of pruning needs only onnx, onnxruntime and numpy. For each topology:
ratio 0 is bit-identical; ratio 0.5 removes exactly the parameters counted by hand, keeps output
shapes and equals the zero-masked copy; an op without a coupling rule is reported, not pruned.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler.graph import onnx_prune, onnx_recover
from edgekiln.compiler.prune import cost, groups, importance

RNG = np.random.default_rng(4)
X = RNG.random((6, 3, 8, 8), dtype=np.float32)


class _Net:
    """A tiny NCHW graph under construction: ops append nodes, weights become initializers."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits[name] = value
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, out: str, cin: int, cout: int, k: int = 3, group: int = 1, **attrs) -> str:
        w = self.const(f"{out}_w", RNG.normal(size=(cout, cin // group, k, k)).astype(np.float32))
        b = self.const(f"{out}_b", RNG.normal(size=cout).astype(np.float32))
        return self.op("Conv", [x, w, b], out, kernel_shape=[k, k], pads=[k // 2] * 4, group=group, **attrs)

    def bn(self, x: str, out: str, c: int) -> str:
        names = [self.const(f"{out}_{p}", v.astype(np.float32)) for p, v in
                 (("s", RNG.random(c) + 0.5), ("b", RNG.normal(size=c)), ("m", RNG.normal(size=c)),
                  ("v", RNG.random(c) + 0.5))]
        return self.op("BatchNormalization", [x, *names], out)

    def gemm(self, x: str, out: str, cin: int, cout: int) -> str:
        w = self.const(f"{out}_w", RNG.normal(size=(cout, cin)).astype(np.float32))
        b = self.const(f"{out}_b", RNG.normal(size=cout).astype(np.float32))
        return self.op("Gemm", [x, w, b], out, transB=1)

    def head(self, x: str, cin: int, cout: int) -> str:
        return self.gemm(self.op("Flatten", [self.op("GlobalAveragePool", [x], "gap")], "flat"), "y", cin, cout)

    def model(self, out: str = "y", out_shape: list | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None] if out_shape is None else out_shape)],
            initializer=[numpy_helper.from_array(v, k) for k, v in self.inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def build(name: str) -> onnx.ModelProto:
    n = _Net()
    if name == "chain":
        x = n.op("Relu", [n.bn(n.conv("x", "a", 3, 8), "bn", 8)], "r")
        n.head(n.op("Relu", [n.conv(x, "b", 8, 16, strides=[2, 2])], "r2"), 16, 4)
    elif name == "residual":  # with a per-channel constant scale after the Add
        r = n.op("Relu", [n.conv("x", "s", 3, 8)], "r")
        x = n.op("Add", [n.conv(r, "b", 8, 8), r], "add")
        x = n.op("Mul", [x, n.const("scale", RNG.random((8, 1, 1)).astype(np.float32))], "scaled")
        n.head(n.conv(n.op("Relu", [x], "r2"), "c", 8, 6), 6, 3)
    elif name == "concat":
        x = n.op("Concat", [n.conv("x", "a", 3, 4), n.conv("x", "b", 3, 6)], "cat", axis=1)
        n.head(n.conv(x, "c", 10, 5), 5, 2)
    elif name == "depthwise":
        x = n.op("Relu", [n.bn(n.conv("x", "a", 3, 8, k=1), "bn1", 8)], "r1")
        x = n.op("Relu", [n.bn(n.conv(x, "dw", 8, 8, group=8), "bn2", 8)], "r2")
        n.head(n.conv(x, "p", 8, 16, k=1), 16, 2)
    elif name == "flatten":  # PyTorch's x.view(n, -1) exports as Reshape
        x = n.op("MaxPool", [n.conv("x", "a", 3, 4)], "pool", kernel_shape=[2, 2], strides=[2, 2])
        x = n.op("Reshape", [x, n.const("shape", np.array([-1, 64], np.int64))], "flat")
        n.gemm(n.op("Relu", [n.gemm(x, "h", 64, 10)], "hr"), "y", 10, 3)
    elif name == "blocked":
        x = n.op("LRN", [n.conv("x", "a", 3, 8)], "lrn", size=3)
        n.head(n.conv(x, "b", 8, 8), 8, 2)
    return n.model()


# float parameters before and after halving every prunable group, counted by hand
HAND_COUNT = {
    "chain": ((27 * 8 + 8) + 4 * 8 + (72 * 16 + 16) + (16 * 4 + 4),
              (27 * 4 + 4) + 4 * 4 + (36 * 8 + 8) + (8 * 4 + 4)),
    "residual": ((27 * 8 + 8) + (72 * 8 + 8) + 8 + (72 * 6 + 6) + (6 * 3 + 3),
                 (27 * 4 + 4) + (36 * 4 + 4) + 4 + (36 * 3 + 3) + (3 * 3 + 3)),
    "concat": ((27 * 4 + 4) + (27 * 6 + 6) + (90 * 5 + 5) + (5 * 2 + 2),
               (27 * 2 + 2) + (27 * 3 + 3) + (45 * 3 + 3) + (3 * 2 + 2)),
    "depthwise": ((3 * 8 + 8) + 32 + (9 * 8 + 8) + 32 + (8 * 16 + 16) + (16 * 2 + 2),
                  (3 * 4 + 4) + 16 + (9 * 4 + 4) + 16 + (4 * 8 + 8) + (8 * 2 + 2)),
    "flatten": ((27 * 4 + 4) + (64 * 10 + 10) + (10 * 3 + 3),
                (27 * 2 + 2) + (32 * 5 + 5) + (5 * 3 + 3)),
    "blocked": ((27 * 8 + 8) + (72 * 8 + 8) + (8 * 2 + 2),
                (27 * 8 + 8) + (72 * 4 + 4) + (4 * 2 + 2)),
}


def float_params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)


@pytest.fixture(scope="module", params=sorted(HAND_COUNT))
def case(request):
    model = build(request.param)
    return request.param, model, groups.analyze(onnx_prune.channel_graph(model))


def _half(analysis: groups.Analysis) -> dict:
    return importance.plan_for(analysis, importance.group_scores(analysis), importance.uniform(analysis, 0.5))


def test_ratio_zero_is_bit_identical(case):
    _, model, analysis = case
    copy = onnx_prune.apply(model, analysis, {})
    assert np.array_equal(onnx_recover.run(copy, X)[0], onnx_recover.run(model, X)[0])


def test_half_removes_exactly_the_hand_counted_parameters(case):
    name, model, analysis = case
    before, after = HAND_COUNT[name]
    plan = _half(analysis)
    pruned = onnx_prune.apply(model, analysis, plan)
    onnx.checker.check_model(pruned)
    assert (float_params(model), float_params(pruned)) == (before, after)
    assert cost.cost(analysis).params - cost.cost(analysis, plan).params == before - after
    y, y_ref = onnx_recover.run(pruned, X)[0], onnx_recover.run(model, X)[0]
    assert y.shape == y_ref.shape and np.all(np.isfinite(y))
    assert np.allclose(onnx_recover.run(onnx_prune.masked(model, analysis, plan), X)[0], y, atol=1e-4)
    assert float_params(model) == before  # the input model is not touched


def test_an_op_without_coupling_rule_is_reported_not_pruned(case):
    name, model, analysis = case
    blocked = {g.label: g.blocked for g in analysis.blocked}
    if name == "blocked":
        assert blocked["a"] == ("LRN lrn has no coupling rule",)
        pruned = onnx_prune.apply(model, analysis, _half(analysis))
        assert numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name == "a_w")).shape[0] == 8
    else:
        assert list(blocked) == ["y"] and blocked["y"] == ("model output y",)


def test_group_conv_and_channel_reshape_block():
    n = _Net()
    x = n.conv(n.conv("x", "a", 3, 8), "g", 8, 8, group=2)
    x = n.op("Reshape", [x, n.const("shape", np.array([-1, 4, 2, 64], np.int64))], "odd")
    n.op("ReduceSum", [x], "y", keepdims=0)
    analysis = groups.analyze(onnx_prune.channel_graph(n.model(out_shape=[])))
    assert not analysis.prunable
    assert analysis.group_of("a").blocked == ("Conv(group=2) g has no coupling rule",)
    g_out = analysis.groups[int(analysis.maps["g"].group[0])]
    assert g_out.blocked == ("Conv(group=2) g has no coupling rule", "Reshape odd has no coupling rule")


def test_reconstruction_restores_a_pruned_onnx_model():
    model = build("residual")
    analysis = groups.analyze(onnx_prune.channel_graph(model))
    plan = _half(analysis)
    x = RNG.random((64, 3, 8, 8), dtype=np.float32)
    reference = onnx_recover.run(model, x)[0]
    pruned = onnx_prune.apply(model, analysis, plan)
    fitted, facts = onnx_recover.reconstruct(pruned, model, analysis, plan, x)
    before = np.mean((onnx_recover.run(pruned, x)[0] - reference) ** 2)
    after = np.mean((onnx_recover.run(fitted, x)[0] - reference) ** 2)
    assert facts["layers"] == 3 and after < 0.5 * before, (before, after)
    assert float_params(fitted) == float_params(pruned)


def _datasets(model: onnx.ModelProto, n_eval: int = 40):
    from edgekiln.compiler.data import Datasets
    from edgekiln.compiler.model_inputs import Dataset

    rng = np.random.default_rng(8)
    calib, evaluation = rng.random((64, 3, 8, 8), np.float32), rng.random((n_eval, 3, 8, 8), np.float32)
    labels = onnx_recover.run(model, evaluation)[0].argmax(1)  # labels the model gets right: reference 100 %
    return Datasets(Dataset({"x": calib}, None, "calib"), Dataset({"x": evaluation}, labels, "eval"))


def test_prune_onnx_stage_uniform_with_reconstruction():
    from edgekiln.compiler.pruning_stage import prune_onnx
    from edgekiln.compiler.recipe import Recipe

    model = build("residual")
    recipe = Recipe(source="m.onnx", quantize="none", prune=0.5)
    pruned, block = prune_onnx(model, recipe, _datasets(model), lambda stage: None)
    assert (block["params_before"], block["params_after"]) == HAND_COUNT["residual"]
    assert block["recovery"]["method"] == "reconstruct" and block["recovery"]["steps"][0]["layers"] == 3
    accuracy = block["accuracy"]
    assert accuracy["reference"] == 100.0 and accuracy["after_recovery"] >= accuracy["before_recovery"]
    assert float_params(pruned) == HAND_COUNT["residual"][1]


def test_prune_onnx_stage_auto_and_refusals():
    from edgekiln.compiler.errors import RecipeError
    from edgekiln.compiler.pruning_stage import prune_onnx
    from edgekiln.compiler.recipe import Recipe

    model = build("chain")
    data = _datasets(model)
    _, block = prune_onnx(model, Recipe(source="m.onnx", quantize="none", prune="auto", max_drop=10.0), data,
                          lambda stage: None)
    assert block["search"]["budget"] == 7.0 and block["search"]["trials"]
    # it pruned (the chain has room: its scan loses nothing at half of either layer), the smallest plan whose
    # paired drop is within the budget, and the shipped model keeps to the budget
    assert block["params_after"] < block["params_before"] and block["macs_after"] < block["macs_before"]
    within = [trial for trial in block["search"]["trials"] if trial["within_budget"]]
    assert within and all(trial["upper_bound"] <= 7.0 for trial in within)
    assert block["macs_after"] == min(trial["macs_after"] for trial in within)
    assert block["accuracy"]["after_recovery"] >= 100.0 - 7.0 and block["accuracy"]["paired"]["upper_bound"] <= 7.0
    with pytest.raises(RecipeError, match="--recover distill trains the model"):
        prune_onnx(model, Recipe(source="m.onnx", quantize="none", prune=0.5, recover="distill"), data,
                   lambda stage: None)
