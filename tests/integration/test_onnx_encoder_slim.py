"""A PyTorch-style ONNX encoder (int64 input_ids + attention_mask, open axes) built with --prune-heads and
--drop-layers through the CLI: the bundle ships fewer heads / blocks, says so, and validates; and prune-scan on it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.integration.conftest import run_runtime
from tests.unit.bert_onnx import DIM, HEADS, HIDDEN, tiny_bert, tokens


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("onnx_encoder")
    onnx.save(tiny_bert(classifier=True), root / "tiny.onnx")
    np.savez(root / "tokens.npz", **tokens(64, 12, seed=3))
    return {"model": root / "tiny.onnx", "calib": root / "tokens.npz", "root": root}


def _shipped_heads(bundle) -> tuple[list[int], list[int]]:
    """The shipped model's query-bias widths and the head counts its split Reshapes produce."""
    from onnx import numpy_helper

    model = onnx.load(str(bundle / "model.onnx"))
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    widths = [len(v) for name, v in values.items() if name.endswith("query.bias")]
    splits = [n.input[1] for n in model.graph.node if n.op_type == "Reshape" and n.output[0].endswith("query/Reshape"
                                                                                                       "_output_0")]
    return widths, [int(values[target][2]) for target in splits]


def test_build_prune_heads_ships_fewer_heads_and_validates(encoder, cli):
    out = encoder["root"] / "heads_bundle"
    done = cli("build", encoder["model"], "--target", "rpi4", "--calib", encoder["calib"], "--prune-heads", "0.5",
               "--format", "onnx", "--quantize", "dynamic", "-o", out)
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    assert p["kind"] == "attention heads" and p["blocked"] == []
    assert [(layer["heads_before"], layer["heads_after"]) for layer in p["layers"]] == [(HEADS, HEADS // 2)] * 2
    assert p["params_before"] - p["params_after"] == 2 * (HEADS // 2) * (3 * (HIDDEN * DIM + DIM) + DIM * HIDDEN)
    assert p["recovery"]["output_cosine_after"] > p["recovery"]["output_cosine_before"]
    assert p["macs_after"] < p["macs_before"] and p["measured"]["model_bytes"] < p["measured"]["unpruned_model_bytes"]
    assert _shipped_heads(out) == ([HEADS // 2 * DIM] * 2, [HEADS // 2] * 2)  # sliced, and reshaped to 2 heads
    assert "attention heads (2 layers, prune 0.5)" in done.output
    validated = run_runtime(out, "validate")
    assert validated.returncode == 0 and "PASS" in validated.stdout, validated.stdout + validated.stderr


def test_build_drop_layers_ships_one_block_and_validates(encoder, cli):
    out = encoder["root"] / "drop_bundle"
    done = cli("build", encoder["model"], "--target", "rpi4", "--calib", encoder["calib"], "--drop-layers", "1",
               "--format", "onnx", "--quantize", "dynamic", "-o", out)
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    assert p["kind"] == "encoder layers" and (p["layers_before"], p["layers_after"]) == (2, 1)
    assert p["recovery"]["method"] == "reconstruct", p["recovery"]
    shipped = onnx.load(str(out / "model.onnx"))
    assert sum(n.op_type == "Softmax" for n in shipped.graph.node) == 1
    validated = run_runtime(out, "validate")
    assert validated.returncode == 0 and "PASS" in validated.stdout, validated.stdout + validated.stderr


def test_auto_slims_an_onnx_encoder_by_probes_that_each_hold_their_verdict(encoder, cli):
    out = encoder["root"] / "auto_bundle"
    done = cli("build", encoder["model"], "--target", "rpi4", "--calib", encoder["calib"], "--drop-layers", "auto",
               "--prune-heads", "auto", "--min-cosine", "0.5", "--min-cosine-p5", "0.3", "--format", "onnx",
               "--quantize", "none", "--runs", "10", "-o", out)
    assert done.exit_code == 0, done.output
    p = json.loads((out / "manifest.json").read_text())["pruning"]
    search = p["search"]
    assert 1 <= len(search["probes"]) <= 8
    # the encoder's token states are an embedding (evaluate/output_kinds.py): judged by cosine, no top-1 floor
    assert search["floors"]["min_agreement"] is None
    for q in search["probes"]:  # each verdict follows from the cosine figures recorded beside it
        holds = q["cosine_mean"] >= 0.5 and q["cosine_p5"] >= 0.3
        assert q["within_budget"] == holds, q
    within = [q for q in search["probes"] if q["within_budget"]]
    if within:  # the shipped setting is the leanest probe within budget, and the model has its parameters
        chosen = search["probes"][search["chosen"]]
        assert chosen["params"] == min(q["params"] for q in within) == p["params_after"]
    else:
        assert p["params_after"] == p["params_before"] and p["warnings"]
    validated = run_runtime(out, "validate")
    assert validated.returncode == 0 and "PASS" in validated.stdout, validated.stdout + validated.stderr


def test_prune_scan_writes_a_row_per_head_and_per_block(encoder, cli, tmp_path):
    done = cli("prune-scan", encoder["model"], "--eval", encoder["calib"], "--json", tmp_path / "s.json",
               "--csv", tmp_path / "s.csv")
    assert done.exit_code == 0, done.output
    assert "one attention head masked alone" in done.output and "one encoder block skipped alone" in done.output
    scan = json.loads((tmp_path / "s.json").read_text())
    assert scan["kind"] == "encoder" and scan["metric"] == "cosine" and scan["samples"] == 64
    layers = [f"/encoder/layer.{k}/attention/self" for k in range(2)]
    assert [(r["layer"], r["index"]) for r in scan["heads"]] == [(n, h) for n in layers for h in range(HEADS)]
    assert [(r["layer"], r["index"]) for r in scan["blocks"]] == [(n, k) for k, n in enumerate(layers)]
    assert all(-1 <= r["cosine_p5"] <= 1 and r["cosine_mean"] < 1 for r in (*scan["heads"], *scan["blocks"]))
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "kind,layer,index,params,accuracy_drop,cosine_mean,cosine_p5,score"
    assert [r.split(",")[0] for r in rows[1:]] == ["head"] * 2 * HEADS + ["block"] * 2


def test_a_torch_style_encoder_reaches_tflite_through_onnx2tf_and_validates(encoder, cli):
    """Erf (exact GELU) would become LiteRT-less FlexErf, int64 token ids cannot calibrate onnx2tf's int8, and LiteRT
    lists the inputs by name (attention_mask before input_ids): each is handled, and the bundle validates."""
    out = encoder["root"] / "tflite_bundle"
    done = cli("build", encoder["model"], "--target", "rpi4", "--calib", encoder["calib"], "--format", "tflite",
               "--quantize", "auto", "--runs", "10", "-o", out)
    assert done.exit_code == 0, done.output
    q = json.loads((out / "manifest.json").read_text())["quantization"]
    rows = {r["name"]: r for r in q["candidates"]}
    assert {"float32", "dynamic"} <= set(rows)
    assert rows["float32"]["cosine_mean"] > 0.9999  # Erf's builtin form is within float rounding of it
    assert "integer input(s) input_ids, attention_mask" in json.dumps(q["not_built"])
    validated = run_runtime(out, "validate")
    assert validated.returncode == 0 and "PASS" in validated.stdout, validated.stdout + validated.stderr


def test_a_bert_with_token_type_ids_builds_heads_pruned_and_validates(cli, tmp_path):
    """Three int64 inputs, as torch exports bert-base: each fed by name from the .npz, through pruning, both
    judging sessions and golden.npz."""
    onnx.save(tiny_bert(classifier=True, token_types=True), tmp_path / "bert3.onnx")
    np.savez(tmp_path / "tokens.npz", **tokens(48, 12, seed=4, token_types=True))
    out = tmp_path / "bundle"
    done = cli("build", tmp_path / "bert3.onnx", "--target", "rpi4", "--calib", tmp_path / "tokens.npz",
               "--prune-heads", "0.5", "--format", "onnx", "--quantize", "dynamic", "--runs", "10", "-o", out)
    assert done.exit_code == 0, done.output
    m = json.loads((out / "manifest.json").read_text())
    assert [i["name"] for i in m["model"]["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["dtype"] == "int64" for i in m["model"]["inputs"])
    assert [layer["heads_after"] for layer in m["pruning"]["layers"]] == [HEADS // 2] * 2
    golden = np.load(out / "golden.npz")
    assert golden["input_2"].dtype == np.int64 and set(np.unique(golden["input_2"])) <= {0, 1}
    validated = run_runtime(out, "validate")
    assert validated.returncode == 0 and "PASS" in validated.stdout, validated.stdout + validated.stderr
