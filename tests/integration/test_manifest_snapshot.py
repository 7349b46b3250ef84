"""The sample models' manifests are what they were recorded as, field by field, timings and host identity
masked (tests/manifest_snapshot.py): a change of the compiler's structure changes no figure, choice or text
a build writes. An intended change of output re-records them (`python -m tests.manifest_snapshot --write`)."""

from __future__ import annotations

import json

import pytest

from tests.manifest_snapshot import FIRST_FILE, RECORDED, build_options, bundle_masked, differences, masked

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", FIRST_FILE)  # the other recipes: test_manifest_snapshot_more.py
def test_manifest_equals_the_recorded_one(name, shared_bundle):
    """The build is the session's shared one (tests/shared_builds.py): test_samples reads the same bundles."""
    recorded = masked(json.loads((RECORDED / f"{name}.json").read_text()))  # masked as the code masks today
    built = json.loads(json.dumps(bundle_masked(shared_bundle(**build_options(name)))))  # tuples as lists
    assert differences(recorded, built) == []


def test_masking_keeps_figures_and_hides_timings():
    manifest = {"latency": {"host": {"p50_ms": 1.5, "cpu": "X"}}, "fidelity": {"sqnr_db": 31.2},
                "quantization": {"reason": "int8: p50 0.412 ms vs float32 0.900 ms; host timing would have chosen "
                                           "float16", "candidates": [{"estimate_ms": 3.1, "p50_ms": 0.4}]}}
    out = masked(manifest)
    assert out["latency"]["host"] == {"p50_ms": "<masked>", "cpu": "<masked>"}
    assert out["fidelity"] == {"sqnr_db": 31.2}
    assert out["quantization"]["candidates"] == [{"estimate_ms": 3.1, "p50_ms": "<masked>"}]
    assert "0.412" not in out["quantization"]["reason"] and "float16" not in out["quantization"]["reason"]
    assert differences({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == [".a[1].b: 2 != 3"]
