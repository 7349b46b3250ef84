"""distill, build --distill and build --qat on an ONNX source: refused in one line saying why and what to do,
before any training or conversion (compiler/distill/onnx_sources.py), never a silent no-op."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration

ONNX = SAMPLES / "mnist_dwsep_nchw.onnx"
DATA = SAMPLES / "mnist_eval_nchw.npz"


def _one_line(result, *fragments):
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "no trainable Keras 3 form" in lines[0] and "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("option", "fragments"), [
    (("--distill", "0.5"), ("--distill trains the student", "export the student and build it")),
    (("--qat",), ("--qat fine-tunes the model", "leave out --qat")),
])
def test_build_refuses_training_options_on_an_onnx_source(cli, tmp_path, option, fragments):
    out = tmp_path / "b"
    result = cli("build", ONNX, "--calib", SAMPLES / "mnist_calib_nchw.npz", "--train", DATA, "-o", out,
                 "--runs", "5", *option)
    _one_line(result, *fragments)
    assert not out.exists()


def test_distill_refuses_an_onnx_teacher(cli, tmp_path):
    out = tmp_path / "student.keras"
    _one_line(cli("distill", ONNX, "--train", DATA, "--student", "0.5", "-o", out), "distill trains the student")
    assert not out.exists() and not out.with_suffix(".json").exists()
