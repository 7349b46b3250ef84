"""bench/fit_estimate.py's cross-validation on constructed anchors: models whose device time is the cost model
on known figures, so what leave-one-out must find is known without it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench import fit_estimate as fe
from edgekiln.compiler.analyze.graph_stats import OpRecord
from edgekiln.compiler.device.estimate import predict_ms
from edgekiln.targets import Estimate

TRUE = Estimate(fp32_gmacs_per_core=2.0, int8_gmacs_per_core=6.0, bandwidth_gbs=4.0, op_overhead_us=30.0,
                thread_efficiency=fe.THREAD_EFFICIENCY)
THETA = np.array([np.log(2.0), np.log(6.0), np.log(4.0), 30.0])


def _model(conv_macs: int, dtype: str, copies: int, copy_bytes: int, small_ops: int) -> tuple[OpRecord, ...]:
    """A network of one compute-bound conv, `copies` memory-bound copies and `small_ops` tiny ops (overhead)."""
    conv = OpRecord("CONV_2D", dtype, conv_macs, 10_000, 10_000, dtype)
    copy = OpRecord("RESHAPE", "float32", 0, 0, copy_bytes, "float32")
    tiny = OpRecord("ADD", "float32", 0, 0, 64, "float32")
    return (conv, *[copy] * copies, *[tiny] * small_ops)


# Six anchors that vary compute, bytes and op count independently, with both dtypes of two "architectures"
RECORDS = {("a", "float32"): _model(300_000_000, "float32", 2, 8_000_000, 20),
           ("a", "int8"): _model(300_000_000, "int8", 2, 8_000_000, 20),
           ("b", "float32"): _model(100_000_000, "float32", 10, 4_000_000, 60),
           ("b", "int8"): _model(100_000_000, "int8", 10, 4_000_000, 60),
           ("c", "float32"): _model(50_000_000, "float32", 1, 2_000_000, 150),
           ("d", "float32"): _model(200_000_000, "float32", 30, 6_000_000, 5)}
STARTS = (np.array([0.0, 1.0, 1.0, 10.0]), np.array([1.0, 2.0, 2.0, 50.0]))
THREADS = 4


def _exact() -> dict:
    return {k: predict_ms(r, TRUE, THREADS).total_ms for k, r in RECORDS.items()}


def test_the_vectorised_cost_the_fit_minimises_is_predict_ms():
    fast = [fe.fast_ms(fe.arrays(records), THETA, THREADS) for records in RECORDS.values()]
    slow = [predict_ms(records, fe.figures(THETA), THREADS).total_ms for records in RECORDS.values()]
    assert len(fast) == 6 and fast == pytest.approx(slow, rel=1e-12)


def test_exact_anchors_give_a_zero_leave_one_out_band_and_ratio_error():
    published = _exact()
    folds = fe.leave_one_out(RECORDS, published, THREADS, STARTS)
    assert set(folds) == set(published)
    for key, fold in folds.items():  # each anchor predicted by a fit on the other five: the true figures
        assert fold.predicted_ms == pytest.approx(published[key], rel=1e-4), key
    assert fe.error_band(published, folds) == (0.0, 0.0)
    ratios = fe.leave_model_out_ratios(RECORDS, published, THREADS, STARTS)
    assert sorted(ratios) == ["a", "b"]  # only the architectures with both dtypes
    assert ratios["a"][0] == pytest.approx(published[("a", "int8")] / published[("a", "float32")])
    assert fe.ratio_error(ratios) == pytest.approx(0.0, abs=1e-4)


def test_a_perturbed_anchor_shows_in_the_band_at_its_own_error():
    published = _exact()
    published[("c", "float32")] *= 1.3  # the published figure 30% above what the true figures give
    folds = fe.leave_one_out(RECORDS, published, THREADS, STARTS)
    # held out, c is predicted by a fit on the five exact anchors: the true figures, so its error is exactly
    # true / (1.3 x true) - 1
    own = folds[("c", "float32")].predicted_ms / published[("c", "float32")] - 1
    assert own == pytest.approx(1 / 1.3 - 1, abs=1e-4)
    lo, hi = fe.error_band(published, folds)
    assert lo <= round(own, 4) and (lo, hi) != (0.0, 0.0)
    # the stored figures' residual on c (fitted on all six) is far smaller than its leave-one-out error: the
    # band must come from the folds, never from the points the fit saw
    full = fe.fit(RECORDS, published, THREADS, starts=STARTS)
    residual = predict_ms(RECORDS[("c", "float32")], full, THREADS).total_ms / published[("c", "float32")] - 1
    assert abs(residual) < abs(own) / 2


def test_the_ratio_error_is_the_worst_architecture_left_out_of_its_fit():
    published = _exact()
    published[("b", "int8")] *= 0.8  # b's int8 runs 20% faster than the figures say
    ratios = fe.leave_model_out_ratios(RECORDS, published, THREADS, STARTS)
    # without either b variant the fit sees exact anchors only: b's predicted ratio is the true one, its
    # published ratio 0.8 x that
    pub, pred = ratios["b"]
    assert pred / pub - 1 == pytest.approx(1 / 0.8 - 1, abs=1e-4)
    assert fe.ratio_error(ratios) == pytest.approx(max(abs(p / q - 1) for q, p in ratios.values()), abs=1e-4)
    assert fe.ratio_error(ratios) >= 0.25 - 1e-4
    assert fe.ratio_error({}) is None


def test_a_figure_left_at_its_bound_is_named():
    assert fe.at_bound(np.array([0.5, 1.0, 2.0, 0.0])) == ("op_overhead_us",)
    assert fe.at_bound(np.array([0.5, 1.0, fe.UPPER[2], 10.0])) == ("bandwidth_gbs",)
    assert fe.at_bound(THETA) == ()


def test_the_target_file_section_round_trips_with_its_folds(tmp_path):
    from edgekiln import targets

    published = _exact()
    published[("c", "float32")] *= 1.3
    e, _, folds = fe.cross_validated(RECORDS, "RPi 9 (made up) column", published, THREADS, STARTS)
    # the band as the file's own (rounded) leave-one-out figures give it, within their rounding of the folds'
    assert e.error_band == pytest.approx(fe.error_band(published, folds), abs=2e-4) and e.ratio_error is not None
    stored = [a.loo_error for a in e.anchors if a.loo_error is not None]
    assert len(stored) == 6 and e.error_band == (round(min(stored), 4), round(max(stored), 4))
    assert all(a.fitted and a.loo_ms is not None and "RPi 9 (made up) column" in a.source for a in e.anchors)
    # the section header alone: a comment of the [emulated] table before it names [estimate] too
    head = re.split(r"^\[estimate\]$", (targets._HERE / "rpi4.toml").read_text(), flags=re.MULTILINE)[0]
    text = head + fe.toml_section(e)
    path = tmp_path / "mine.toml"
    path.write_text(text)
    assert targets.load(str(path)).estimate == e
