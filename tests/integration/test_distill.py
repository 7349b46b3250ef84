"""`edgekiln distill` on the smallest sample CNN: a width-0.5 student, its report, its file, and the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekiln.compiler.prune import width as widths
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The sample's 1,000 labelled digits: 700 to train on, 300 to judge on."""
    root = tmp_path_factory.mktemp("distill")
    data = np.load(SAMPLES / "mnist_eval.npz")
    np.savez(root / "train.npz", x=data["x"][:700], y=data["y"][:700])
    np.savez(root / "eval.npz", x=data["x"][700:], y=data["y"][700:])
    return root


def test_a_student_at_half_width_has_a_quarter_of_the_macs_and_an_interval(cli, split):
    out = split / "student.keras"
    result = cli("distill", SAMPLES / "mnist_cnn.keras", "--train", split / "train.npz", "--eval",
                 split / "eval.npz", "--student", "0.5", "--epochs", "1", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert 0.2 < report["macs_ratio"] < 0.32, report["macs_ratio"]  # w^2 inside, w at the first conv and the head
    paired = report["paired"]
    assert paired["samples"] == 300 and paired["interval"][0] <= paired["drop"] <= paired["interval"][1]
    assert paired["drop"] == pytest.approx(report["teacher_figures"]["score"] - report["student_figures"]["score"],
                                           abs=2e-3)
    assert report["student_figures"]["estimate_ms"] < report["teacher_figures"]["estimate_ms"]

    from edgekiln.compiler.tf_env import import_keras

    keras = import_keras()
    student = keras.models.load_model(out, safe_mode=True)
    teacher = keras.models.load_model(SAMPLES / "mnist_cnn.keras")
    assert [type(a).__name__ for a in student.layers] == [type(b).__name__ for b in teacher.layers]
    convs = [(a.filters, b.filters) for a, b in zip(student.layers, teacher.layers, strict=True)
             if type(b).__name__ == "Conv2D"]
    assert len(convs) == 4 and all(a == widths.kept(b, 0.5) for a, b in convs), convs
    assert student.output.shape[-1] == teacher.output.shape[-1] == 10  # the classes are not scaled
    assert report["student_figures"]["params"] == student.count_params()


def test_bad_student_and_output_are_refused_in_one_line(cli, split):
    for args, words in ((("--student", "1.5"), "must lie in (0, 1]"), (("--student", "wide"), "takes auto"),
                        (("-o", split / "s.h5"), "must end in .keras")):
        result = cli("distill", SAMPLES / "mnist_cnn.keras", "--train", split / "train.npz", "-o",
                     split / "s.keras", *args)
        assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output, result.output
    assert not (split / "s.keras").exists()


def test_the_loss_is_the_documented_mix():
    from edgekiln.compiler.graph import keras_distill

    rng = np.random.default_rng(0)
    teacher, student = rng.dirichlet(np.ones(5), 8), rng.dirichlet(np.ones(5), 8)
    labels = rng.integers(0, 5, 8)
    t = 3.0

    def soft_max(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    pt, ps = soft_max(np.log(teacher) / t), soft_max(np.log(student) / t)
    soft = t * t * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), 1))
    hard = -np.mean(np.log(student[np.arange(8), labels]))
    both = keras_distill.loss(t, True, True)(labels, teacher.astype(np.float32), student.astype(np.float32))
    alone = keras_distill.loss(t, True, False)(labels, teacher.astype(np.float32), student.astype(np.float32))
    w = keras_distill.SOFT_WEIGHT
    assert float(both) == pytest.approx(w * soft + (1 - w) * hard, rel=1e-5)
    assert float(alone) == pytest.approx(soft, rel=1e-5)


def test_build_distill_ships_the_student_measured_against_the_source(split, tmp_path):
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    manifest = build(Recipe(source=str(SAMPLES / "mnist_cnn.keras"), target="rpi4", calib=str(SAMPLES /
                            "mnist_calib.npz"), eval=str(split / "eval.npz"), train=str(split / "train.npz"),
                            output=str(tmp_path / "b"), bench_runs=5, format="tflite", quantize="int8",
                            distill=0.5)).manifest
    d = manifest["distillation"]
    assert d["width"] == 0.5 and 0.2 < d["macs_ratio"] < 0.32
    assert d["params_after"] < d["params_before"] == manifest["source"]["params"]
    assert manifest["model"]["macs"] < 0.35 * d["macs_before"]  # the shipped model is the student
    assert manifest["accuracy"]["samples"] == d["paired"]["samples"] == 300
