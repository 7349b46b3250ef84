"""The sample transformer built from its sentences (--text with its tokenizer.json) to static ONNX int8.

Its QDQ graph is one where onnxruntime 1.32's AVX2 S8->U8 weight rewrite (asked for by x64quantprecision)
adds an initializer twice and the session fails to open (runtime/backends.py onnx_session): the build and the
bundle runtime must open it anyway, on any x86 CPU."""

from __future__ import annotations

import json

import pytest

from tests.conftest import SAMPLES
from tests.integration.conftest import run_runtime

pytestmark = pytest.mark.integration


def test_the_sample_transformer_builds_from_sentences_to_onnx_int8_and_validates(cli, tmp_path):
    out = tmp_path / "intent"
    done = cli("build", SAMPLES / "intent_encoder.keras", "-t", "rpi4", "--text", SAMPLES / "intent_calib.txt",
               "--tokenizer", SAMPLES / "intent_tokenizer.json", "--eval", SAMPLES / "intent_eval.txt",
               "--format", "onnx", "--quantize", "int8", "--calibration", "minmax", "--runs", "5", "-o", out)
    assert done.exit_code == 0, done.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["quantization"]["variant"].endswith("int8"), m["quantization"]
    assert m["accuracy"]["samples"] == 640 and m["accuracy"]["drop"] <= 1.0, m["accuracy"]
    assert run_runtime(out, "validate").returncode == 0
