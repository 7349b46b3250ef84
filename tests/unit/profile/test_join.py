"""The profile's arithmetic that needs no interpreter: the 80 % mark, sum vs whole, layer matching."""

from __future__ import annotations

from edgekiln.compiler.profile import AGREEMENT, _mark_hot, agreement, block
from edgekiln.compiler.profile.stage import layers_side_by_side
from edgekiln.compiler.profile.static import OpFacts, onnx_match


def _rows(*ms: float) -> list[dict]:
    return [{"name": f"op{k}", "layer": f"layer{k % 2}", "ms": m} for k, m in enumerate(ms)]


def test_hot_ops_are_the_slowest_that_together_take_80_percent():
    rows = _rows(5.0, 3.0, 1.0, 0.5, 0.5)  # 10 ms: 5 + 3 = 80 % is reached after the second row
    _mark_hot(rows)
    assert [r["hot"] for r in rows] == [True, True, False, False, False]


def test_agreement_is_the_ratio_and_its_bound():
    assert agreement(1.1, 1.0) == {"ratio": 1.1, "within": True, "bound": AGREEMENT}
    assert agreement(1.3, 1.0)["within"] is False and agreement(0.75, 1.0)["within"] is False
    assert agreement(1.0, 0.0)["within"] is False  # no whole measured: nothing adds up


def test_the_manifest_block_keeps_the_top_rows():
    profile = {"method": "prefix-differences", "threads": 1, "total_ms": 2.0, "sum_ms": 2.1, "profile_s": 0.5,
               "agreement": agreement(2.1, 2.0), "runs": 30, "estimate": None, "ops": _rows(1.0, 0.6, 0.5)}
    kept = block(profile, top=2)
    assert [op["name"] for op in kept["ops"]] == ["op0", "op1"] and kept["ops_total"] == 3
    assert kept["sum_ms"] == 2.1 and kept["total_ms"] == 2.0 and kept["method"] == "prefix-differences"


def test_layers_are_matched_by_name_slowest_first():
    before = {"ops": _rows(1.0, 2.0, 1.0)}  # layer0: 2.0, layer1: 2.0
    after = {"ops": [{"layer": "layer0", "ms": 0.5}, {"layer": "new", "ms": 0.1}]}
    rows = layers_side_by_side(before, after, ("unpruned_ms", "pruned_ms"))
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer["layer0"] == {"layer": "layer0", "unpruned_ms": 2.0, "pruned_ms": 0.5, "ratio": 0.25}
    assert by_layer["layer1"]["pruned_ms"] == 0.0 and by_layer["new"]["ratio"] is None
    assert rows[-1]["layer"] == "new"


def test_onnxruntime_names_are_matched_to_source_nodes():
    conv = OpFacts("/conv/Conv", 100, 10, 40, "float32", None)
    facts = {"/conv/Conv": conv, "/conv/Conv_output_0": conv}
    assert onnx_match("/conv/Conv", facts) is conv
    assert onnx_match("/conv/Conv_output_0_nchwc", facts) is conv
    assert onnx_match("ReorderOutput", facts) is None
