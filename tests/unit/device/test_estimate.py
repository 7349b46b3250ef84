"""The latency estimate: its cost model on hand-made op records, and the figures stored in the targets."""

from __future__ import annotations

import pytest

from edgekiln import targets
from edgekiln.compiler.analyze.graph_stats import OpRecord
from edgekiln.compiler.commands.targets import estimate_error
from edgekiln.compiler.device.estimate import band_ms, predict_ms, target_estimate, traffic_bytes
from edgekiln.targets import Estimate

FIGURES = Estimate(fp32_gmacs_per_core=2.0, int8_gmacs_per_core=8.0, bandwidth_gbs=4.0, op_overhead_us=10.0,
                   thread_efficiency=0.5)
ANCHORED = ["rpi4", "rpi3", "rpi3-armv7l"]


def test_compute_bound_op_scales_with_rate_and_threads():
    conv = OpRecord("CONV_2D", "float32", macs=2_000_000, weight_bytes=1000, activation_bytes=1000)
    # 2e6 MACs / 2 GMAC/s = 1 ms on one thread; 3 threads at efficiency 0.5 give n_eff = 2.
    assert predict_ms([conv], FIGURES, 1).compute_ms == pytest.approx(1.0)
    assert predict_ms([conv], FIGURES, 3).compute_ms == pytest.approx(0.5)
    as_int8 = OpRecord("CONV_2D", "int8", 2_000_000, 1000, 1000)
    assert predict_ms([as_int8], FIGURES, 1).compute_ms == pytest.approx(0.25)


def test_memory_bound_op_is_charged_bandwidth_and_every_op_overhead():
    copy = OpRecord("RESHAPE", "float32", macs=0, weight_bytes=0, activation_bytes=8_000_000)
    cost = predict_ms([copy, copy], FIGURES, 4)
    assert cost.memory_ms == pytest.approx(4.0)  # 2 x 8 MB / 4 GB/s
    assert cost.compute_ms == 0 and cost.overhead_ms == pytest.approx(0.02)
    assert cost.total_ms == pytest.approx(4.02)


@pytest.mark.parametrize("name", ANCHORED)
def test_anchored_targets_store_the_leave_one_out_band_not_the_fits_residuals(name):
    e = targets.load(name).estimate
    assert e is not None and len(e.anchors) == 6 and e.error_band is not None
    # every anchor carries its leave-one-out prediction and its source; the band is the range of THOSE errors
    # (bench/fit_estimate.py), not of the stored figures' residuals on the points they were fitted on
    loo = [a.loo_ms / a.published_ms - 1 for a in e.anchors]
    residuals = [a.estimate_ms / a.published_ms - 1 for a in e.anchors]
    assert e.error_band == (round(min(loo), 4), round(max(loo), 4))
    assert e.error_band != (round(min(residuals), 4), round(max(residuals), 4))
    assert max(loo) - min(loo) > max(residuals) - min(residuals)  # a test is harder than a fit
    for anchor, error in zip(e.anchors, loo, strict=True):
        assert abs(error) <= 0.40, f"{name} {anchor.model} {anchor.dtype} is off by {error:+.0%}"
        assert anchor.source.startswith("XNNPACK README") and "row" in anchor.source
    assert 0 < e.ratio_error < 0.2
    assert "XNNPACK" in " ".join(e.sources)


DERIVED_FROM = {"rpi5": "rpi4", "rpi-zero-2w": "rpi3", "generic-aarch64": "rpi4"}


def test_every_pi_target_has_an_estimate_saying_what_it_rests_on():
    for name in ["rpi4", "rpi5", "rpi3", "rpi3-armv7l", "rpi-zero-2w", "generic-aarch64"]:
        e = targets.load(name).estimate
        assert e is not None and e.fp32_gmacs_per_core > 0 and e.basis_text()
        # anchors of its own, or derived from a target that has them: never both, never neither
        assert bool(e.anchors) == (name in ANCHORED) and e.derived_from == DERIVED_FROM.get(name, ""), name
        assert ("derived from" in e.basis_text()) == (name in DERIVED_FROM), e.basis_text()
        assert ("band unknown" in e.basis_text()) == (name in DERIVED_FROM), e.basis_text()


@pytest.mark.parametrize("name", sorted(DERIVED_FROM))
def test_a_derived_target_is_its_parents_figures_scaled_with_no_band_of_its_own(name):
    """What bench/fit_estimate.py derives from the parent's current figures: a parent re-fitted without its
    children re-derived fails here. Rates scale together; thread efficiency is the parent's; the band and the
    ratio error are unknown (the file says `anchors = 0`), not borrowed from the parent."""
    from bench.fit_estimate import derive

    parent, e = targets.load(DERIVED_FROM[name]).estimate, targets.load(name).estimate
    assert parent is not None and parent.anchors and e is not None and not e.anchors
    assert e == derive(parent, name)
    assert e.error_band is None and e.ratio_error is None and parent.error_band is not None
    assert "anchors = 0" in (targets._HERE / f"{name}.toml").read_text()
    assert e.thread_efficiency == parent.thread_efficiency
    assert e.int8_gmacs_per_core / e.fp32_gmacs_per_core == pytest.approx(
        parent.int8_gmacs_per_core / parent.fp32_gmacs_per_core, rel=1e-4)


@pytest.mark.parametrize("name", ["rpi4", "rpi3"])
def test_manifest_estimate_is_the_cost_model_on_the_targets_figures_with_its_band(name):
    target = targets.load(name)
    e = target.estimate
    assert e is not None
    records = [OpRecord("CONV_2D", "int8", 10_000_000, 50_000, 100_000)] * 5
    estimate = target_estimate(target, records)
    # by hand, from the target's figures: each conv is compute-bound (its 150 kB move in far less time than its
    # 10 M int8 MACs take on 1 + (threads - 1) x efficiency cores), plus one op overhead each
    cores = 1 + (target.default_threads - 1) * e.thread_efficiency
    conv_ms = 10_000_000 / (e.int8_gmacs_per_core * 1e9 * cores) * 1e3
    assert 150_000 / (e.bandwidth_gbs * 1e9) * 1e3 < conv_ms / 10
    compute, overhead = 5 * conv_ms, 5 * e.op_overhead_us / 1e3
    assert estimate["breakdown_ms"] == pytest.approx({"compute": compute, "memory": 0.0, "overhead": overhead},
                                                     abs=1e-3)
    p50 = compute + overhead
    assert estimate["method"] == "estimate" and estimate["p50_ms"] == pytest.approx(p50, abs=1e-3)
    # the device's time as far as the anchors tell: the leave-one-out error e = predicted / published - 1 lay
    # in [lo, hi], so published = estimate / (1 + e)
    lo, hi = e.error_band
    assert estimate["error_band"] == [lo, hi] and lo < 0 < hi
    assert estimate["low_ms"] == pytest.approx(p50 / (1 + hi), abs=1e-3)
    assert estimate["high_ms"] == pytest.approx(p50 / (1 + lo), abs=1e-3)
    assert estimate["anchors"] == 6 and estimate["held_out"] == [] and len(estimate["fitted_on"]) == 6
    assert estimate["band"].startswith("leave-one-out over 6 published anchors")
    assert estimate["ratio_error"] == e.ratio_error
    assert target_estimate(targets.load("x86-64"), records) is None


def test_a_board_without_anchors_has_no_low_or_high():
    records = [OpRecord("CONV_2D", "int8", 10_000_000, 50_000, 100_000)] * 5
    estimate = target_estimate(targets.load("rpi5"), records)
    assert estimate is not None and estimate["p50_ms"] > 0
    assert estimate["low_ms"] is None and estimate["high_ms"] is None and estimate["error_band"] is None
    assert estimate["band"] == "no published figure for this board: band unknown"
    assert estimate["anchors"] == 0 and estimate["ratio_error"] is None


def test_the_range_is_the_published_time_the_band_allows():
    # an estimate of 12 ms with anchors predicted 20% low to 50% high: the device takes 12 / 1.5 .. 12 / 0.8
    assert band_ms(12.0, (-0.2, 0.5)) == (8.0, 15.0)
    assert band_ms(12.0, None) == (None, None)


def test_targets_table_cell_names_the_anchors_and_the_cross_validated_band():
    e = targets.load("rpi4").estimate
    lo, hi = e.error_band
    assert e.at_bound == ("bandwidth_gbs",)  # the rpi4 fit sits at the bus peak: the table says so
    assert estimate_error(targets.load("rpi4")) == \
        f"6 anchors: {lo * 100:+.0f}%..{hi * 100:+.0f}% (leave-one-out); bandwidth_gbs at bound"
    assert estimate_error(targets.load("rpi5")) == "0 anchors: band unknown (derived from rpi4)"
    assert estimate_error(targets.load("x86-64")) == "no estimate"


def test_a_band_without_anchors_is_refused(tmp_path):
    text = (targets._HERE / "rpi5.toml").read_text().replace("anchors = 0", "error_band = [-0.1, 0.1]")
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(targets.TargetFileError, match="band unknown"):
        targets.load(str(path))


def test_unknown_key_in_estimate_table_is_an_error(tmp_path):
    text = (targets._HERE / "rpi4.toml").read_text().replace("[estimate]\n", "[estimate]\nturbo = 2\n")
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(targets.TargetFileError, match=r"\[estimate\] has unknown keys: turbo"):
        targets.load(str(path))


def test_key_appended_after_the_anchors_is_an_error(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((targets._HERE / "rpi4.toml").read_text() + "\nturbo = true\n")
    with pytest.raises(targets.TargetFileError, match="unknown keys: turbo"):
        targets.load(str(path))


def test_targets_command_shows_each_targets_anchor_error(monkeypatch):
    from typer.testing import CliRunner

    from edgekiln.compiler.cli import app

    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["targets"])
    assert result.exit_code == 0, result.output
    assert "estimate error" in result.output
    for name in ("rpi4", "rpi3", "rpi5", "x86-64"):
        assert estimate_error(targets.load(name)) in result.output
    rpi5 = next(line for line in result.output.splitlines() if "rpi5" in line)
    assert "0 anchors: band unknown" in rpi5


def test_an_int8_op_outside_the_fast_path_costs_the_slow_kernels_on_one_thread():
    from edgekiln.compiler.device.estimate import SLOW_KERNEL_FACTOR

    swish = OpRecord("HARD_SWISH", "int8", 0, 0, 4_000_000, "int8")
    fast = predict_ms([swish], FIGURES, 4)
    slow = predict_ms([swish], FIGURES, 4, {"HARD_SWISH": 1})
    # int8 bytes are charged as float32-sized: the built-in kernels' time follows elements
    assert slow.memory_ms == pytest.approx(fast.memory_ms * SLOW_KERNEL_FACTOR * 4)
    assert slow.overhead_ms == fast.overhead_ms  # the extra piece is its own DELEGATE record
    conv = OpRecord("CONV_2D", "int8", 2_000_000, 1000, 1000, "int8")
    # only as many nodes of an op as the coverage names are slow: the second conv keeps 3 threads' rate
    two = predict_ms([conv, conv], FIGURES, 3, {"CONV_2D": 1})
    assert two.compute_ms == pytest.approx(0.25 * SLOW_KERNEL_FACTOR + 0.125)


def test_dynamic_range_computes_in_float_and_float16_weights_dequantize_at_load():
    dynamic = OpRecord("FULLY_CONNECTED", "int8", 2_000_000, 1000, 1000, "float32")
    full = OpRecord("FULLY_CONNECTED", "int8", 2_000_000, 1000, 1000, "int8")
    assert predict_ms([dynamic], FIGURES, 1).compute_ms == pytest.approx(1.0)  # the float32 rate
    assert predict_ms([full], FIGURES, 1).compute_ms == pytest.approx(0.25)
    unpack = OpRecord("DEQUANTIZE", "float16", 0, 2_000_000, 4_000_000, "const")
    assert predict_ms([unpack], FIGURES, 1).total_ms == 0


def test_the_estimate_names_the_basis_of_each_op_class_it_costs():
    records = [OpRecord("CONV_2D", "int8", 10_000_000, 50_000, 100_000, "float32"),
               OpRecord("RESIZE_BILINEAR", "float32", 0, 0, 100_000, "float32")]
    bases = target_estimate(targets.load("rpi4"), records)["per_op_basis"]
    assert "no published per-op figure" in bases["resize"]
    assert "no published Pi figure" in bases["dynamic_range"]
    onnx = target_estimate(targets.load("rpi4"), records, "onnx")
    assert "no published onnxruntime Pi figure" in onnx["basis"]


def test_a_candidate_estimate_reads_its_measured_coverage():
    from edgekiln.compiler.device.estimate import candidate_ms

    records = [OpRecord("CONV_2D", "int8", 10_000_000, 50_000, 100_000, "int8"),
               OpRecord("HARD_SWISH", "int8", 0, 0, 200_000, "int8")]
    rpi4 = targets.load("rpi4")
    inside = candidate_ms(rpi4, "tflite", records, {"outside_fast_path": {}})
    outside = candidate_ms(rpi4, "tflite", records, {"outside_fast_path": {"HARD_SWISH": 1}})
    assert inside is not None and outside is not None and outside > inside
    assert candidate_ms(targets.load("x86-64"), "tflite", records) is None


def test_a_fused_attention_is_charged_its_macs_and_the_basis_says_what_covers_the_fused_ops():
    """onnxruntime's com.microsoft Attention (what the fused candidates hold): its Q/K/V projections and score /
    context products count as MACs (ONNX's own shape inference cannot type its output: onnxruntime's symbolic
    one does), and a fused LayerNorm after it is charged by bytes, as the basis says."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgekiln.compiler.analyze.onnx_stats import onnx_stats

    tokens, width, heads = 6, 8, 2
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Attention", ["x", "w", "b"], ["a"], domain="com.microsoft", num_heads=heads),
             helper.make_node("SkipLayerNormalization", ["a", "x", "g", "beta"], ["y"], domain="com.microsoft")]
    weights = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
               for n, s in (("w", (width, 3 * width)), ("b", (3 * width,)), ("g", (width,)), ("beta", (width,)))]
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, tokens, width]) for n in ("x", "y"))
    graph = helper.make_graph(nodes, "fused", [x], [y], weights)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    records = onnx_stats(model.SerializeToString()).records
    attention = next(r for r in records if r.op == "Attention")
    assert attention.macs == tokens * width * 3 * width + 2 * tokens * tokens * width  # projections + QK^T and PV
    skip = next(r for r in records if r.op == "SkipLayerNormalization")
    assert skip.macs == 0 and skip.activation_bytes == 3 * tokens * width * 4  # two inputs and the output
    estimate = target_estimate(targets.load("rpi4"), records, "onnx")
    assert estimate is not None and {"attention", "fused_elementwise"} <= set(estimate["per_op_basis"])


@pytest.mark.parametrize("op", ["GATHER", "Gather"])
def test_an_embedding_lookup_is_charged_the_rows_it_gathers_not_the_table(op):
    # MiniLM-L3: a 30522 x 384 float table (47 MB); 32 ids gather 32 rows (49 KB out)
    ids, rows = 32 * 8, 32 * 384 * 4
    lookup = OpRecord(op, "float32", macs=0, weight_bytes=30522 * 384 * 4, activation_bytes=ids + rows)
    small_table = OpRecord(op, "float32", macs=0, weight_bytes=1000 * 384 * 4, activation_bytes=ids + rows)
    cost = predict_ms([lookup], FIGURES, 1)
    assert cost.memory_ms == pytest.approx(2 * (ids + rows) / 4e9 * 1e3)
    assert cost == predict_ms([small_table], FIGURES, 1)  # the table's size does not matter
    assert traffic_bytes(OpRecord("CONV_2D", "float32", 0, 1000, 500)) == 1500  # other ops: weights + activations


def test_the_summary_and_the_report_print_band_unknown_for_a_derived_board(capsys, monkeypatch):
    """A build for rpi5 (no published figure): the summary's estimate row and the report's estimate card say
    "band unknown" where an anchored board prints its cross-validated range."""
    from rich.table import Table

    from edgekiln.compiler import summary
    from edgekiln.compiler.console import console
    from edgekiln.compiler.report.headline import _estimate

    records = [OpRecord("CONV_2D", "int8", 10_000_000, 50_000, 100_000)] * 5
    monkeypatch.setattr(console, "width", 200)
    for name, shown in (("rpi5", "band unknown"), ("rpi4", "range ")):
        est = target_estimate(targets.load(name), records)
        m = {"target": {"name": name}, "latency": {"target_estimate": est}, "baseline": {"target_estimate": est}}
        table = Table()
        for column in ("what", "float32", "compiled", "ratio"):
            table.add_column(column)
        summary._estimate_row(table, m)  # type: ignore[arg-type]  # noqa: SLF001
        console.print(table)
        printed = capsys.readouterr().out
        assert f"{name} p50 ESTIMATE (4 threads; {shown}" in printed, printed
        card = _estimate(m)
        assert card is not None and (("band unknown: no published figure for this board" in card) == (name == "rpi5"))
    rpi4 = target_estimate(targets.load("rpi4"), records)
    lo, hi = targets.load("rpi4").estimate.error_band
    assert rpi4["low_ms"] == pytest.approx(rpi4["p50_ms"] / (1 + hi), abs=1e-3)
    assert summary.estimate_range(rpi4) == f"range {rpi4['low_ms']:.3g}-{rpi4['high_ms']:.3g} ms"


def test_a_16x8_op_is_charged_the_float32_rate_and_outside_the_fast_path_its_slow_kernels():
    from edgekiln.compiler.device.estimate import SLOW_KERNEL_FACTOR

    # a 16x8 conv: int8 weights, int16 input; no int8 kernel runs it
    sixteen = OpRecord("CONV_2D", "int8", 2_000_000, 1000, 1000, "int16")
    as_float = OpRecord("CONV_2D", "float32", 2_000_000, 1000, 1000, "float32")
    assert predict_ms([sixteen], FIGURES, 1).compute_ms == predict_ms([as_float], FIGURES, 1).compute_ms == \
        pytest.approx(1.0)
    # TFLite: XNNPACK takes no 16x8 op (the coverage lists every one): LiteRT's kernels, one thread
    slow = predict_ms([sixteen], FIGURES, 4, {"CONV_2D": 1})
    assert slow.compute_ms == pytest.approx(SLOW_KERNEL_FACTOR)
    bases = target_estimate(targets.load("rpi4"), [sixteen])["per_op_basis"]
    assert "the float32 rate, no faster" in bases["int16_activations"] and "dynamic_range" not in bases
