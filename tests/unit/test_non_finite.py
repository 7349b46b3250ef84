"""Non-finite figures: never in JSON, never an equalisation scale, never a calibration range (no TensorFlow)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgekiln.compiler import manifest
from edgekiln.compiler.deploy import records
from edgekiln.compiler.emit import calibrate
from edgekiln.compiler.evaluate import metrics
from edgekiln.compiler.rewrite import equalize
from edgekiln.runtime import jsonsafe


def _strict(text: str) -> dict:
    """json.loads that refuses the Infinity / NaN tokens Python's json writes by default."""
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def _figures() -> dict:
    """What a build of a random-weight MobileNetV2 measures: an exact output (SQNR inf), an all-zero one
    (0/0), a ratio over zero, numpy scalars."""
    exact = metrics.fidelity([np.full((4, 1000), 1e-3, np.float32)], [np.full((4, 1000), 1e-3, np.float32)])
    return {"fidelity": {**exact, "sqnr_db": float("inf")},
            "per_output": [{"sqnr_db": np.float64(np.inf)}, {"sqnr_db": float("nan")}, {"sqnr_db": -math.inf}],
            "size": {"ratio": np.float32(np.inf)}, "latency": {"speedup_vs_baseline": float("nan"), "p50_ms": 1.5},
            "count": np.int64(3), "device_id": "pi"}


def test_jsonsafe_writes_null_and_states_what_each_one_was():
    written = _strict(jsonsafe.dumps(_figures()))
    assert written["fidelity"]["sqnr_db"] is None and written["size"]["ratio"] is None
    assert written["latency"] == {"speedup_vs_baseline": None, "p50_ms": 1.5} and written["count"] == 3
    meanings = written["non_finite"]
    assert meanings["fidelity.sqnr_db"].startswith("inf: no error")
    assert meanings["per_output[1].sqnr_db"].startswith("nan: undefined")
    assert meanings["per_output[2].sqnr_db"].startswith("-inf")
    assert meanings["size.ratio"].startswith("inf: infinite (a ratio over zero")


def test_every_writer_writes_strict_json(tmp_path):
    """manifest.json (build, and deploy's rewrite of it), measurements/<device>.json; the runtime's and
    prune-scan's --json go through the same jsonsafe.dumps."""
    figures = _figures()
    assert _strict(manifest.dumps(figures))["non_finite"]
    (tmp_path / "measurements").mkdir()
    records.write_measurement(tmp_path, {**figures, "latency": None})
    assert _strict((tmp_path / "measurements" / "pi.json").read_text())["size"]["ratio"] is None
    sections = {key: {} for key in manifest.REQUIRED_KEYS if key not in ("schema_version", "compiler", "created_utc")}
    (tmp_path / "manifest.json").write_text(manifest.dumps(manifest.assemble(
        {**sections, **figures, "latency": {**figures["latency"], "device": []}})))
    records.record_in_manifest(tmp_path, [])
    assert _strict((tmp_path / "manifest.json").read_text())["fidelity"]["sqnr_db"] is None


def test_manifest_states_what_null_means():
    assembled = manifest.assemble({key: {} for key in manifest.REQUIRED_KEYS if key not in
                                   ("schema_version", "compiler", "created_utc")})
    assert "sqnr_db" in assembled["null_values"]


def test_dead_channel_gets_scale_one_instead_of_infinity():
    """The real mini-Xception: r1 = 2.2e-33, r2 = 1.4e-33; their float32 product underflows to 0."""
    r1 = np.array([3.48, 2.19e-33, 1.2, 0.7], np.float32)
    r2 = np.array([0.25, 1.41e-33, 0.1, 0.3], np.float32)
    assert np.float32(r1[1]) * np.float32(r2[1]) == 0.0  # the cause: sqrt(0) / r2 = 0, then 1 / 0 = inf
    s = equalize.channel_scales(r1, r2)
    assert np.all(np.isfinite(s)) and np.all(s > 0) and np.all(np.isfinite(1.0 / s))
    assert s[1] == 1.0
    np.testing.assert_allclose(s[[0, 2, 3]], np.sqrt(r1[[0, 2, 3]] / r2[[0, 2, 3]]), rtol=1e-6)


def test_non_finite_activation_ranges_are_never_clipped_or_histogrammed():
    stats = {0: calibrate.TensorStats("relu", 0.0, float("inf"), np.zeros(calibrate.BINS, np.int64), np.zeros(0),
                                      True)}
    calibrate._accumulate(stats[0], np.array([[1.0, np.inf]], np.float32))  # np.histogram raised here
    assert calibrate.ranges(stats, "percentile") == {} and calibrate.ranges(stats, "entropy") == {}


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_with_ranges_refuses_a_non_finite_range(value):
    from edgekiln.compiler.errors import ConversionError

    with pytest.raises(ConversionError, match="non-finite"):
        calibrate.with_ranges(b"unused", {3: (0.0, value)})
