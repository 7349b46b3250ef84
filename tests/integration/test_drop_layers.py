"""--drop-layers N on a three-block Keras encoder the test builds: blocks found from the graph, exactly N removed,
the residual stream passed through, the head re-fitted by least squares, and a bundle that validates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.conftest import run_runtime
from tests.integration.encoders import HEADS, block_params

pytestmark = pytest.mark.integration
BLOCKS = 3


@pytest.fixture
def encoder(encoder3) -> dict:
    return encoder3


def _load(encoder: dict):
    from edgekiln.compiler.tf_env import import_keras

    return import_keras().models.load_model(encoder["model"]), np.load(encoder["calib"])["x"]


def test_the_blocks_are_found_from_the_graph(encoder):
    from edgekiln.compiler.graph import keras_layers

    model, _ = _load(encoder)
    blocks = keras_layers.encoder_blocks(model)
    assert len(blocks) == BLOCKS
    for k, block in enumerate(blocks):
        named = {name for name in block.layers if not name.startswith(("add", "multi"))}
        assert named == {f"mha_{k}", f"ln_a_{k}", f"ff_a_{k}", f"ff_b_{k}", f"ln_b_{k}"}, block.layers


def test_dropping_none_is_bit_identical_and_n_removes_exactly_n_blocks(encoder):
    from edgekiln.compiler.graph import keras_layers

    model, x = _load(encoder)
    same, facts = keras_layers.drop(model, 0, x, recover=True)
    assert np.array_equal(same.predict(x, verbose=0), model.predict(x, verbose=0))
    assert facts["params_after"] == facts["params_before"] == model.count_params()
    for count in (1, 2):
        short, facts = keras_layers.drop(model, count, x, recover=False)
        assert short.count_params() == model.count_params() - count * block_params()
        assert (facts["layers_before"], facts["layers_after"]) == (BLOCKS, BLOCKS - count)
        assert [b["kept"] for b in facts["blocks"]] == [k < BLOCKS - count for k in range(BLOCKS)]
        names = {layer.name for layer in short.layers}
        assert {f"mha_{k}" for k in range(BLOCKS - count)} <= names
        assert not {f"mha_{k}" for k in range(BLOCKS - count, BLOCKS)} & names
        assert short.predict(x, verbose=0).shape == (len(x), 4)


def test_refitting_the_head_brings_the_output_closer_than_no_recovery(encoder):
    from edgekiln.compiler.graph import keras_layers

    model, x = _load(encoder)
    _, plain = keras_layers.drop(model, 2, x, recover=False)
    _, refit = keras_layers.drop(model, 2, x, recover=True)
    assert plain["recovery"]["output_cosine_after"] == plain["recovery"]["output_cosine_before"]
    assert refit["recovery"]["what"].startswith("least-squares re-fit of 'probs'")
    assert refit["recovery"]["output_cosine_after"] > plain["recovery"]["output_cosine_after"], refit["recovery"]


def test_a_count_that_leaves_no_block_is_one_clear_error(encoder, cli):
    done = cli("build", encoder["model"], "--calib", encoder["calib"], "--drop-layers", str(BLOCKS),
               "-o", encoder["root"] / "none_left")
    assert done.exit_code != 0
    assert f"--drop-layers {BLOCKS}: the model has {BLOCKS} encoder block(s)" in done.output
    assert "Traceback" not in done.output and not (encoder["root"] / "none_left").exists()


def test_build_drop_layers_with_head_pruning_ships_the_slimmer_encoder(encoder, cli):
    out = encoder["root"] / "slim"
    done = cli("build", encoder["model"], "-t", "rpi4", "--calib", encoder["calib"], "--eval", encoder["eval"],
               "--drop-layers", "1", "--prune-heads", "0.5", "--format", "tflite", "--quantize", "dynamic",
               "-o", out)
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    assert p["layer_drop"]["layers_after"] == BLOCKS - 1
    assert [(layer["heads_before"], layer["heads_after"]) for layer in p["layers"]] == [(HEADS, 1)] * (BLOCKS - 1)
    assert p["params_before"] > p["params_after"]
    assert p["measured"]["unpruned_model_bytes"] > p["measured"]["model_bytes"]
    assert run_runtime(out, "validate").returncode == 0


def test_distillation_after_the_refit_never_leaves_the_encoder_further_from_the_source(encoder, cli):
    from edgekiln.compiler.graph import keras_layers

    out = encoder["root"] / "distilled"
    done = cli("build", encoder["model"], "-t", "rpi4", "--calib", encoder["calib"], "--drop-layers", "1",
               "--recover", "distill", "--format", "tflite", "--quantize", "none", "--runs", "10", "-o", out)
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    distilled = p["distillation"]
    assert distilled["method"] == "distill" and distilled["epochs"] >= 1 and distilled["augment"].startswith("none")
    assert distilled["output_cosine_before"] == pytest.approx(p["recovery"]["output_cosine_after"], abs=1e-6)
    assert distilled["kept"] == (distilled["output_cosine_after"] >= distilled["output_cosine_before"])
    shipped = distilled["output_cosine_after"] if distilled["kept"] else distilled["output_cosine_before"]
    model, x = _load(encoder)  # the shipped float model is as far from the source as the facts say
    _, refit = keras_layers.drop(model, 1, x, recover=True)
    assert shipped >= refit["recovery"]["output_cosine_after"] - 1e-6


def test_distillation_of_an_onnx_encoder_is_refused_in_one_line(cli, tmp_path):
    import onnx

    from tests.unit.bert_onnx import tiny_bert, tokens

    onnx.save(tiny_bert(), tmp_path / "tiny.onnx")
    np.savez(tmp_path / "tokens.npz", **tokens(16, 8))
    done = cli("build", tmp_path / "tiny.onnx", "--calib", tmp_path / "tokens.npz", "--drop-layers", "1",
               "--recover", "distill", "-o", tmp_path / "out")
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "--recover distill trains the model, which is possible for Keras sources only" in done.output
    assert not (tmp_path / "out").exists()
