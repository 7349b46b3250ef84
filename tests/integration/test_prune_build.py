"""`edgekiln build --prune` and `edgekiln prune-scan` end to end, with the real converter and runtime."""

from __future__ import annotations

import json

import pytest

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.pipeline import build
from tests.integration.conftest import run_runtime, tiny_recipe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pruned_bundle(tiny, tmp_path_factory):
    recipe = tiny_recipe(tiny, tmp_path_factory.mktemp("p") / "half", prune=0.5, recover="reconstruct")
    return build(recipe)


def test_pruned_bundle_is_smaller_validates_and_records_what_was_removed(pruned_bundle):
    m = pruned_bundle.manifest
    p = m["pruning"]
    # the tiny model: conv 8 -> BN -> ReLU -> conv 16 -> GAP -> dense 4 (softmax output: never pruned)
    assert [(r["layer"], r["filters_before"], r["filters_after"]) for r in p["per_layer"]] == \
        [("conv2d", 8, 4), ("conv2d_1", 16, 8), ("probs", 4, 4)]
    assert p["params_before"] == m["source"]["params"] == 9 * 8 + 8 + 32 + 72 * 16 + 16 + 16 * 4 + 4
    assert p["params_after"] == 9 * 4 + 4 + 16 + 36 * 8 + 8 + 8 * 4 + 4
    assert p["macs_after"] == m["model"]["macs"] < p["macs_before"] == m["source"]["macs"]
    assert p["recovery"]["method"] == "reconstruct" and p["recovery"]["steps"][0]["layers"] == 2
    assert p["accuracy"]["metric"] == "accuracy" and p["accuracy"]["reference"] == 100.0
    assert p["judged_on"].startswith("20 evaluation samples, by accuracy; the reported accuracy is measured on the "
                                     "same samples")
    assert m["accuracy"]["reference"] == 100.0  # the reference stays the unpruned source model
    measured = p["measured"]
    assert measured["unpruned_model_bytes"] > measured["model_bytes"] == m["model"]["bytes"]
    assert m["size"]["unpruned_model_bytes"] == measured["unpruned_model_bytes"]
    # the unpruned reference is built as the shipped variant, through the same search
    _assert_compiled_as_shipped(m)
    assert m["latency"]["pruning"]["unpruned_p50_ms"] > 0 and m["latency"]["pruning"]["speedup"] > 0
    # each layer's time, unpruned beside pruned, matched by layer name (the pruned convs are in both)
    per_layer = {row["layer"]: row for row in measured["per_layer_ms"]}
    pruned_convs = [layer for layer in per_layer if "conv2d_1" in layer.split("+")]
    assert pruned_convs and all(min(per_layer[c]["unpruned_ms"], per_layer[c]["pruned_ms"]) >= 0 for c in pruned_convs)
    assert sum(r["unpruned_ms"] for r in per_layer.values()) > 0 and sum(r["pruned_ms"] for r in per_layer.values()) > 0
    assert m["profile"]["ops"] and m["profile"]["agreement"]["bound"] == 0.2
    # the pruned side is the shipped model's profile, measured once: every op of this small model is in the block
    assert m["profile"]["ops_total"] == len(m["profile"]["ops"])
    shipped: dict[str, float] = {}
    for op in m["profile"]["ops"]:
        shipped[op["layer"]] = shipped.get(op["layer"], 0.0) + op["ms"]
    assert {layer: row["pruned_ms"] for layer, row in per_layer.items() if layer in shipped} == \
        {layer: round(ms, 4) for layer, ms in shipped.items()}
    assert run_runtime(pruned_bundle.output, "validate").returncode == 0


def test_ratio_zero_removes_nothing_and_says_so(tiny, tmp_path):
    m = build(tiny_recipe(tiny, tmp_path / "zero", prune=0.0, quantize="none")).manifest
    p = m["pruning"]
    assert p["params_after"] == p["params_before"] and p["macs_after"] == p["macs_before"]
    assert p["recovery"] == {"method": "none", "reason": "nothing was removed"} and p["measured"] is None
    assert m["accuracy"]["drop"] == 0.0


def test_auto_searches_and_stays_within_the_budget(tiny, tmp_path):
    # 20 evaluation samples on a random tiny model: one sample is 5 points, hence the wide budget
    m = build(tiny_recipe(tiny, tmp_path / "auto", prune="auto", recover="reconstruct", max_drop=60.0,
                          quantize="none")).manifest
    p, search = m["pruning"], m["pruning"]["search"]
    assert search["budget"] == 42.0 and len(search["scan"]["rows"]) == 2 and search["trials"]
    assert len(search["scan"]["rows"][0]["drops"]) == len(search["scan"]["ratios"]) == 5
    chosen = [t for t in search["trials"] if t["within_budget"]]
    assert chosen and p["macs_after"] == min(t["macs_after"] for t in chosen) < p["macs_before"]
    assert p["accuracy"]["after_recovery"] >= 100.0 - 42.0
    assert m["accuracy"]["reference"] == 100.0 and m["accuracy"]["compiled"] == p["accuracy"]["after_recovery"]


def test_prune_refuses_sources_it_cannot_rebuild(tiny, tmp_path):
    with pytest.raises(RecipeError, match="needs a Keras model"):
        build(tiny_recipe(tiny, tmp_path / "sm", source=str(tiny["saved_model"]), prune=0.5))
    with pytest.raises(RecipeError, match="finetune needs labels 'y' in the calibration data"):
        build(tiny_recipe(tiny, tmp_path / "ft", prune=0.5, recover="finetune"))
    assert not (tmp_path / "sm").exists() and not (tmp_path / "ft").exists()


def test_cli_prune_flags_and_bad_ratio(cli, tiny, tmp_path):
    bad = cli("build", tiny["keras"], "--calib", tiny["calib"], "--prune", "1.5", "-o", tmp_path / "x")
    assert bad.exit_code == 1 and "prune must be a ratio in [0, 1) or 'auto', got 1.5" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_prune_scan_prints_and_writes_the_table(cli, tiny, tmp_path):
    result = cli("prune-scan", tiny["keras"], "--eval", tiny["eval"], "--ratios", "0.25,0.5,0.75",
                 "--json", tmp_path / "s.json", "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.stderr
    assert "conv2d" in result.stdout and "not prunable: probs" in result.stdout
    table = json.loads((tmp_path / "s.json").read_text())
    assert table["metric"] == "accuracy" and table["ratios"] == [0.25, 0.5, 0.75]
    assert [r["label"] for r in table["rows"]] == ["conv2d", "conv2d_1"]
    assert table["blocked"][0]["layers"] == ["probs"]
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 2 * 3


def _assert_compiled_as_shipped(m: dict) -> None:
    """The unpruned reference is the shipped variant; a refinement that changed nothing for the unpruned model
    ("identical to int8") is plain int8, the same model byte for byte, and the block says so."""
    measured = m["pruning"]["measured"]
    assert (measured["format"], measured["shipped_as"]) == (m["model"]["format"],
                                                            m["quantization"]["variant"].split(":")[-1])
    if measured["compiled_as"] != measured["shipped_as"]:
        assert measured["compiled_as"] == "int8", measured
        assert measured["compiled_as_because"].startswith("identical to int8"), measured


def test_a_recovery_that_hurts_is_refused_and_recorded(tiny, tmp_path):
    """Fine-tuning on labels that are all one (rare) class teaches the pruned model to answer that class:
    worse than not recovering at all, so the unrecovered weights ship, and the manifest says why."""
    import numpy as np

    train = np.random.default_rng(3).random((2000, 8, 8, 1), dtype=np.float32)  # the tiny model's kind of input
    labels = np.load(tiny["eval"])["y"]
    rare = int(np.argmin(np.bincount(labels, minlength=4)))
    np.savez(tmp_path / "wrong.npz", x=train, y=np.full(len(train), rare, np.int64))
    m = build(tiny_recipe(tiny, tmp_path / "b", prune=0.25, recover="finetune", train=str(tmp_path / "wrong.npz"),
                          quantize="none")).manifest
    p = m["pruning"]
    recovery = p["recovery"]
    assert recovery["method"] == "finetune" and recovery["score_after"] < recovery["score_before"], recovery
    assert recovery["used"] is False and recovery["refused"].startswith("finetune made the pruned model worse")
    assert p["accuracy"]["after_recovery"] == p["accuracy"]["before_recovery"]  # the unrecovered model shipped
    assert p["recovery_data"] == f"{len(train)} training samples (--train)"
    assert p["accuracy"]["paired"]["samples"] == len(labels)
