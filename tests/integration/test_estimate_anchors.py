"""The latency estimate against the published figures it was NOT fitted on (held-out anchors).

Converts the held-out anchor models (MobileNet v2, float32 and int8, random weights: latency does
not depend on them) with edgekiln's own emitter, takes their per-op MACs and bytes through
compiler.analyze, and estimates them with the figures stored in each anchored target's TOML.
The converted models are cached in pytest's cache directory, so a re-run takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.anchor_models import tflite_bytes
from edgekiln import targets
from edgekiln.compiler.analyze.tflite_stats import tflite_stats
from edgekiln.compiler.device.estimate import predict_ms

pytestmark = pytest.mark.integration
ANCHORED = ["rpi4", "rpi3", "rpi3-armv7l"]
TOLERANCE = 0.30


@pytest.fixture(scope="module")
def anchor_records(request, tmp_path_factory) -> dict:
    """Per-op records of every held-out anchor model of the anchored targets."""
    cache = Path(request.config.cache.mkdir("edgekiln-anchors")) if hasattr(request.config, "cache") else \
        tmp_path_factory.mktemp("edgekiln-anchors")  # pytest -p no:cacheprovider: convert them afresh
    wanted = {(a.model, a.dtype) for name in ANCHORED for a in targets.load(name).estimate.anchors if not a.fitted}
    return {key: tflite_stats(tflite_bytes(*key, cache)).records for key in sorted(wanted)}


@pytest.mark.parametrize("name", ANCHORED)
def test_held_out_anchors_are_estimated_within_30_percent(name, anchor_records):
    target = targets.load(name)
    held_out = [a for a in target.estimate.anchors if not a.fitted]
    assert held_out, f"{name} keeps no anchor out of its fit"
    for anchor in held_out:
        estimate = predict_ms(anchor_records[(anchor.model, anchor.dtype)], target.estimate,
                              target.default_threads).total_ms
        error = estimate / anchor.published_ms - 1
        assert abs(error) <= TOLERANCE, f"{name} {anchor.model} {anchor.dtype}: {estimate:.1f} ms vs " \
                                        f"published {anchor.published_ms} ms ({error:+.0%})"
        # the TOML's recorded estimate is what the stored figures give on a fresh conversion
        assert estimate == pytest.approx(anchor.estimate_ms, rel=0.02)
