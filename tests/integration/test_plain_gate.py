"""TFLite: plain int8 is judged once per build context, however many candidates ask whether it misses (the
diagnosis, the tuned base, the refinement guard, int8+adaround, 16x8): the real converter and judge, the judge's
runs counted."""

from __future__ import annotations

import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.search import tflite_builder
from edgekiln.compiler.search.context import BuildContext
from edgekiln.compiler.search.variants import VARIANTS, Plan
from tests import synthetic
from tests.counting_judge import CountingJudge

pytestmark = pytest.mark.integration
PLANNED = ("float32", "int8", "int8+rewrites", "int8+adaround", "16x8")


def test_plain_int8_is_judged_once_by_every_candidate_that_asks(tmp_path):
    from edgekiln.compiler.graph import keras_graph
    from edgekiln.compiler.tf_env import import_keras

    model, x = synthetic.outlier(import_keras(), magnitude=1.0)  # no outlier: plain int8 meets the floor
    graph = keras_graph.from_model(model, tmp_path / "sm", "keras", "tiny")
    calib = Dataset({graph.inputs[0].name: x[:48]}, None, "test")
    judge = CountingJudge.for_tuning(Reference(graph), Datasets(calib, None), 1)
    assert isinstance(judge, CountingJudge)
    plan = Plan(tuple(v for v in VARIANTS["tflite"] if v.name in PLANNED))
    ctx = BuildContext(graph, "keras", plan, calib, judge, Criterion(min_sqnr_db=20.0), tmp_path / "work",
                       fold=True)  # a fold: no per-layer diagnosis (the slow part), the same gate
    (tmp_path / "work").mkdir()
    built = {b.variant.name: b for b in tflite_builder.build(ctx).built}
    plain = built["int8"].model
    assert plain is not None and judge.judged.count(plain) == 1, len(judge.judged)
    for name in ("int8+adaround", "16x8"):  # both asked, both told plain int8 meets the floor
        assert built[name].model is None and built[name].notes[0].startswith("not needed: plain int8 meets"), \
            built[name].notes
