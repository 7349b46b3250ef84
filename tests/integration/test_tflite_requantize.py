"""A cross-fitting fold's int8 TFLite from the build's SavedModel (emit/tflite_requantize.py) is byte for byte what
onnx2tf writes when it converts the ONNX graph again on the fold's samples, in every int8 file and alone or together;
and the ONNX -> TFLite builder takes that path in a fold (search/onnx2tf_builder.py). Real onnx2tf, converter and
LiteRT, on a one-conv ONNX model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.emit import tflite_from_onnx
from edgekiln.compiler.emit.tflite_requantize import ORDER, requantize
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search import onnx2tf_builder
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import Plan, plan
from tests.unit.hard_swish_models import hard_swish_cnn, images

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def conversions(tmp_path_factory) -> dict:
    """A build's int8 candidate (int8 I/O) on all 40 samples through the builder, which keeps its onnx2tf conversion
    on the graph, and onnx2tf run again on a fold's 20 (the path the folds took before)."""
    tmp = tmp_path_factory.mktemp("requantize")
    (tmp / "m.onnx").write_bytes(hard_swish_cnn(("Relu",), gate=False, size=8).SerializeToString())
    graph = load(tmp / "m.onnx", "onnx", tmp)
    x = images(40, size=8)
    every, fold = Dataset({"x": x}, None, "calib"), Dataset({"x": x[1::2]}, None, "calib")
    judge = Judge.for_build(Reference(graph), Datasets(every, fold, None), 1, None)
    ctx = BuildContext(graph, "onnx", plan(Quantize.int8, "tflite", "onnx", only="int8"), every, judge, Criterion(),
                       tmp / "build", True, "minmax", "uint8")
    ctx.workdir.mkdir()
    built = {b.name: b for b in onnx2tf_builder.build(ctx).built}
    again = tflite_from_onnx.convert(graph, fold, Quantize.int8, tmp)
    return {"graph": graph, "fold": fold, "ctx": ctx, "built": built, "again": again, "tmp": tmp}


def test_requantized_files_are_the_bytes_onnx2tf_writes_for_the_same_samples(conversions: dict) -> None:
    graph, fold, again = (conversions[k] for k in ("graph", "fold", "again"))
    (build,) = graph.tflite_conversions.values()  # the builder's conversion, kept for the folds
    together = requantize(build, graph, fold, ORDER, conversions["tmp"])
    for suffix in ORDER:
        assert together.model(suffix) == again.model(suffix), suffix
    # the fold's samples did calibrate them: the build's own int8 file (all 40 samples) has other ranges
    assert together.model("integer_quant") != build.model("integer_quant")
    assert together.baseline == build.baseline and together.layouts == build.layouts


def test_a_fold_of_the_builder_reuses_the_builds_saved_model(conversions: dict, tmp_path: Path) -> None:
    """The fold makes its one int8 file alone (int8 I/O: full_integer_quant), with a converter that made no other."""
    ctx, built, again = (conversions[k] for k in ("ctx", "built", "again"))
    fold_ctx = replace(ctx, plan=Plan(tuple(c for c in ctx.candidates if c.name == "int8")), calib=conversions["fold"],
                       workdir=tmp_path / "fold", fold=True)
    fold_ctx.workdir.mkdir()
    made = {b.name: b for b in onnx2tf_builder.build(fold_ctx).built}
    assert built["int8"].model is not None and made["int8"].model is not None
    assert made["int8"].model == again.model("full_integer_quant")  # as onnx2tf on the fold's samples
    assert made["int8"].model != built["int8"].model
    assert [p.name for p in fold_ctx.workdir.iterdir()] == ["requantize-0"]  # no onnx2tf run in the fold
    assert len(list(ctx.workdir.glob("onnx2tf-*"))) == 1
