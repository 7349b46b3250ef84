"""Importance scores, ratio choice under a budget, and least-squares reconstruction (numpy only)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgekiln.compiler.prune import cost, groups, importance, recover, sensitivity
from edgekiln.compiler.prune.channels import ChannelGraph, Node
from edgekiln.compiler.prune.paired import paired_drop
from edgekiln.compiler.recipe import Recover
from tests.unit.prune.test_groups import chain, drop, inp, op


def test_l1_removes_the_filters_with_the_smallest_norms():
    w = np.array([[1.0, 1.0], [0.1, 0.1], [3.0, -3.0], [-0.2, 0.0]])
    graph = ChannelGraph((inp("x", 2), Node("a", "Dense", ("x",), 4, weight=w), Node("b", "Dense", ("a",), 2,
                          weight=np.ones((2, 4)))), ("b",))
    analysis = groups.analyze(graph)
    scores = importance.group_scores(analysis, "l1")
    plan = importance.plan_for(analysis, scores, {analysis.group_of("a").id: 0.5})
    assert plan[analysis.group_of("a").id].tolist() == [True, False, True, False]


def test_group_score_normalises_each_member_before_summing():
    small = np.array([[1.0], [2.0], [3.0]])          # member scores 1, 2, 3 (mean 2)
    large = np.array([[300.0], [200.0], [100.0]])    # 300, 200, 100 (mean 200): would dominate a raw sum
    graph = ChannelGraph((inp("x", 1), Node("a", "Dense", ("x",), 3, weight=small),
                          Node("b", "Dense", ("x",), 3, weight=large), op("add", "Add", ("a", "b"), 3, 1),
                          Node("c", "Dense", ("add",), 2, weight=np.ones((2, 3)))), ("c",))
    analysis = groups.analyze(graph)
    scores = importance.group_scores(analysis, "l2")[analysis.group_of("a").id]
    assert scores == pytest.approx([0.5 + 1.5, 1.0 + 1.0, 1.5 + 0.5])


def test_bn_criterion_uses_gamma():
    analysis = groups.analyze(chain())
    gamma = analysis.graph.node("bn").scale
    scores = importance.group_scores(analysis, "bn")[analysis.group_of("a").id]
    assert np.argsort(scores).tolist() == np.argsort(gamma).tolist()


def test_a_ratio_never_removes_every_channel_and_aligns_what_it_keeps():
    assert importance.removed_count(8, 0.99) == 7
    assert importance.removed_count(8, 0.5) == 4
    assert importance.removed_count(1, 0.9) == 0
    assert [importance.removed_count(96, r, 16) for r in (0.1, 0.5, 0.7, 0.99)] == [16, 48, 64, 80]
    assert importance.removed_count(16, 0.5, 16) == 8  # too small to align: as asked


def _scan(drops: dict[str, list[float]]) -> tuple[sensitivity.Scan, groups.Analysis, dict]:
    analysis = groups.analyze(chain())
    scores = importance.group_scores(analysis)
    ids = {g.label: g.id for g in analysis.prunable}
    rows = tuple(sensitivity.ScanRow(ids[k], k, 8, tuple(v), (0,) * len(v)) for k, v in drops.items())
    return sensitivity.Scan("accuracy", 90.0, 100, (0.1, 0.3, 0.5), 1000, rows), analysis, scores


def test_weights_rank_groups_by_sensitivity_and_skip_the_hopeless():
    scan, analysis, _ = _scan({"a": [0.1, 5.0, 9.0], "b": [0.0, 0.3, 0.6]})
    ids = {g.label: g.id for g in analysis.prunable}
    assert sensitivity.weights(scan) == {ids["a"]: 0.5, ids["b"]: 1.0}
    scan, _, _ = _scan({"a": [25.0, 50.0, 80.0], "b": [0.0, 0.3, 0.6]})
    assert sensitivity.weights(scan)[ids["a"]] == 0.0  # 25 points lost at the smallest ratio: skipped


def test_candidates_grow_with_alpha_and_respect_the_channel_multiple():
    scan, analysis, scores = _scan({"a": [0.1, 5.0, 9.0], "b": [0.0, 0.3, 0.6]})
    options = sensitivity.candidates(scan, analysis, scores)
    remaining = [cost.cost(analysis, importance.plan_for(analysis, scores, o)).macs for o in options]
    assert len(options) >= 4 and remaining == sorted(remaining, reverse=True)  # fewest MACs removed first
    ids = {g.label: g.id for g in analysis.prunable}
    assert all(o[ids["b"]] == pytest.approx(2 * o[ids["a"]]) for o in options)  # a is the sensitive one
    aligned = sensitivity.candidates(scan, analysis, scores, multiple=4)
    for o in aligned:  # b has 16 channels: kept counts are multiples of 4; a (8 channels) too
        kept = importance.plan_for(analysis, scores, o, 4)
        assert all(int(k.sum()) % 4 == 0 for k in kept.values())


def test_search_finds_the_most_aggressive_plan_within_budget():
    scan, analysis, scores = _scan({"a": [0.1, 1.0, 9.0], "b": [0.0, 0.5, 2.0]})
    options = sensitivity.candidates(scan, analysis, scores)
    removed = [sum(r.values()) for r in options]
    # a stand-in for "drop after recovery" that grows with the total ratio: the budget allows a total of 0.8
    chosen, trials, stopped = sensitivity.search(options, lambda r: sum(r.values()) - 0.3, 0.5, analysis, scores, 10)
    assert sum(chosen.values()) == max(x for x in removed if x <= 0.8 + 1e-9)
    assert trials and all(t.within_budget == (t.drop <= 0.5) for t in trials)
    assert stopped.startswith("searched every scale")


def test_search_returns_no_plan_when_nothing_meets_the_budget():
    scan, analysis, scores = _scan({"a": [0.1, 1.0, 9.0]})
    chosen, trials, _ = sensitivity.search(sensitivity.candidates(scan, analysis, scores), lambda r: 5.0, 1.0,
                                           analysis, scores)
    assert chosen == {} and not any(t.within_budget for t in trials)


def test_a_first_plan_that_misses_is_shrunk_until_one_fits():
    scan, analysis, scores = _scan({"a": [0.1, 1.0, 9.0], "b": [0.0, 0.5, 2.0]})
    options = sensitivity.candidates(scan, analysis, scores)
    total = [sum(r.values()) for r in options]  # the global scale grows along the options

    def measured(ratios):  # a real budget test: the paired drop of made-up verdicts, 4 lost per 0.1 of scale
        lost = int(round(sum(ratios.values()) * 40))
        reference = np.ones(1000, bool)
        pruned = reference.copy()
        pruned[:lost] = False
        return paired_drop(reference, pruned)

    chosen, trials, _ = sensitivity.search(options, measured, 1.0, analysis, scores, 10)
    assert not trials[0].within_budget  # the first probe (the middle scale) missed the budget
    assert chosen and measured(chosen).within(1.0)
    bigger = [r for r, t in zip(options, total, strict=True) if t > sum(chosen.values())]
    assert all(not measured(r).within(1.0) for r in bigger)  # nothing more aggressive fits
    assert all(t.evidence["samples"] == 1000 and "upper_bound" in t.evidence for t in trials)


def test_a_past_deadline_starts_no_probe_and_small_gains_are_not_tried():
    scan, analysis, scores = _scan({"a": [0.1, 1.0, 9.0], "b": [0.0, 0.5, 2.0]})
    options = sensitivity.candidates(scan, analysis, scores)
    chosen, trials, stopped = sensitivity.search(options, lambda r: 0.0, 1.0, analysis, scores, 10,
                                                 deadline=time.monotonic() - 1)
    assert (chosen, trials) == ({}, []) and stopped.startswith("stopped by the time cap")
    base = cost.cost(analysis).macs
    kept = sensitivity.worth_trying(options, analysis, scores, min_gain=0.5)
    assert all(base - cost.cost(analysis, importance.plan_for(analysis, scores, o)).macs >= 0.5 * base for o in kept)
    assert len(kept) < len(options)


def _conv_direct(x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Reference NHWC convolution by loops."""
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, _, co = w.shape
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, co))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def test_patches_times_kernel_is_the_convolution():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 7, 7, 3)), rng.normal(size=(3, 3, 3, 4))
    pads = recover.Geometry.same_pads((7, 7), (3, 3), (2, 2), (1, 1))
    assert pads == (1, 1, 1, 1)
    geometry = recover.Geometry(3, 3, (2, 2), (1, 1), pads)
    positions = recover.sample_positions(x, geometry)
    y = recover.patches(x, geometry, positions) @ w.reshape(-1, 4)
    assert np.allclose(y.reshape(2, 4, 4, 4), _conv_direct(x, w, 2, pads))


def test_reconstruction_recovers_a_redundant_channel_exactly():
    """Channel 3 = channel 0 + channel 1: removing it loses nothing a re-fit cannot restore."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 6, 6, 3))
    x = np.concatenate([x, x[..., :1] + x[..., 1:2]], axis=-1)
    w, b = rng.normal(size=(3, 3, 4, 5)), rng.normal(size=5)
    keep_in, keep_out = np.array([True, True, True, False]), np.array([True, False, True, True, True])
    geometry = recover.Geometry(3, 3, pads=(1, 1, 1, 1))
    kernel, bias = recover.reconstruct(x, x[..., keep_in], keep_in, keep_out, w, b, geometry)
    assert kernel.shape == (3, 3, 3, 4) and bias.shape == (4,)
    positions = recover.sample_positions(x, geometry)
    want = recover.patches(x, geometry, positions) @ w.reshape(-1, 5)[:, keep_out] + b[keep_out]
    got = recover.patches(x[..., keep_in], geometry, positions) @ kernel.reshape(-1, 4) + bias
    assert np.abs(got - want).max() < 1e-2 * np.abs(want).max()
    naive = recover.patches(x[..., keep_in], geometry, positions) @ w[:, :, keep_in][..., keep_out].reshape(-1, 4)
    assert np.abs(naive + b[keep_out] - want).max() > 10 * np.abs(got - want).max()


def test_dense_reconstruction_without_bias():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5))
    x[:, 4] = 2 * x[:, 0] - x[:, 2]
    w = rng.normal(size=(5, 3))
    keep = np.array([True, True, True, True, False])
    kernel, bias = recover.reconstruct(x, x[:, keep], keep, np.ones(3, bool), w, None, recover.Geometry())
    # exact up to the ridge term's shrinkage (RIDGE = 1e-3 of the mean diagonal)
    assert bias is None and np.abs(x[:, keep] @ kernel - x @ w).max() < 1e-2 * np.abs(x @ w).max()


def test_auto_recovery_is_distill_with_training_else_reconstruct():
    assert recover.resolve("auto", trainable=True) is Recover.distill
    assert recover.resolve("auto", trainable=False) is Recover.reconstruct
    assert recover.resolve("finetune", trainable=True) is Recover.finetune


def test_drop_helper_matches_group_sizes():
    analysis = groups.analyze(chain())
    assert drop(analysis, "a", 0)[analysis.group_of("a").id].sum() == 7
