"""--drop-layers auto / --prune-heads auto through the CLI, and prune-scan on an encoder, on the three-block
encoder of tests/integration/encoders.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.encoders import HEADS, block_params

pytestmark = pytest.mark.integration
BLOCKS = 3


def test_drop_layers_auto_records_a_search_whose_chosen_probe_meets_its_budget(encoder3, cli):
    out = encoder3["root"] / "auto"
    done = cli("build", encoder3["model"], "-t", "rpi4", "--calib", encoder3["calib"], "--eval", encoder3["eval"],
               "--drop-layers", "auto", "--max-drop", "50", "--format", "tflite", "--quantize", "none", "--runs", "10",
               "-o", out)  # its labels are the source's own answers: 60 samples, 1.7 points each
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    search = p["search"]
    assert search["budget"] == pytest.approx(35.0)  # 70 % of --max-drop 50, the rest left to quantization
    probes = search["probes"]
    assert 1 <= len(probes) <= BLOCKS - 1 and {q["prune_heads"] for q in probes} == {0.0}
    assert [q["drop_layers"] for q in probes] == list(range(BLOCKS - 1, BLOCKS - 1 - len(probes), -1))
    for q in probes:  # each verdict follows from the figures recorded beside it
        assert q["within_budget"] == (search["reference_accuracy"] - q["accuracy"] <= search["budget"]), q
    chosen = probes[search["chosen"]]
    assert chosen["within_budget"] and p["layers_after"] == BLOCKS - chosen["drop_layers"] and p["warnings"] == []
    assert p["params_after"] == chosen["params"] == p["params_before"] - chosen["drop_layers"] * block_params()
    assert all(not q["within_budget"] for q in probes[:search["chosen"]])  # more dropped: over budget
    assert p["measured"]["unpruned_model_bytes"] > p["measured"]["model_bytes"]


def test_prune_scan_on_an_encoder_has_one_row_per_head_and_per_block(encoder3, cli, tmp_path):
    from edgekiln.compiler.evaluate.metrics import cosine
    from edgekiln.compiler.graph import keras_heads, keras_layers
    from edgekiln.compiler.tf_env import import_keras

    done = cli("prune-scan", encoder3["model"], "--eval", encoder3["eval"], "--json", tmp_path / "s.json",
               "--csv", tmp_path / "s.csv")
    assert done.exit_code == 0, done.output
    assert "one attention head masked alone" in done.output and "one encoder block skipped alone" in done.output
    scan = json.loads((tmp_path / "s.json").read_text())
    assert scan["kind"] == "encoder" and scan["metric"] == "accuracy" and scan["reference"] == 100.0
    assert [(r["layer"], r["index"]) for r in scan["heads"]] == [(f"mha_{k}", h) for k in range(BLOCKS)
                                                                 for h in range(HEADS)]
    assert [(r["layer"], r["index"]) for r in scan["blocks"]] == [(f"mha_{k}", k) for k in range(BLOCKS)]
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + BLOCKS * HEADS + BLOCKS
    # The figures are those of the model run with that head's output-projection slice zeroed, and the scores
    # are the criterion --prune-heads removes heads by, on the same samples.
    model = import_keras().models.load_model(encoder3["model"])
    x, y = np.load(encoder3["eval"])["x"], np.load(encoder3["eval"])["y"]
    reference = model.predict(x, verbose=0)
    _, facts = keras_heads.prune(model, 0.5, x, recover=False)
    for k, layer in enumerate(facts["layers"]):
        assert [r["score"] for r in scan["heads"][k * HEADS:(k + 1) * HEADS]] == pytest.approx(layer["scores"],
                                                                                              rel=1e-4)
    row = scan["heads"][1]
    with keras_heads.head_masked(model, "mha_0", 1) as masked:
        out = masked.predict(x, verbose=0)
    assert cosine(reference, out)["cosine_mean"] == pytest.approx(row["cosine_mean"], abs=1e-5)
    assert row["cosine_mean"] < 1.0
    assert row["accuracy_drop"] == pytest.approx(100.0 - 100 * np.mean(out.argmax(1) == y), abs=1e-3)
    # Skipping the last block alone is --drop-layers 1 without re-fit.
    short, _ = keras_layers.drop(model, 1, x, recover=False)
    assert cosine(reference, short.predict(x, verbose=0))["cosine_mean"] == pytest.approx(
        scan["blocks"][-1]["cosine_mean"], abs=1e-5)
    assert scan["blocks"][-1]["params"] == keras_layers.block_params(model)[-1]
    assert np.array_equal(model.predict(x, verbose=0), reference)  # the mask was restored
