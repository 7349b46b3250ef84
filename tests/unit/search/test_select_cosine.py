"""The search of a build under a cosine floor, on a tiny ONNX model (real onnxruntime, no TensorFlow): the
floor reaches the table's rule and the tuning, and every candidate row carries its cosines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.data import Datasets
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search.select import FormatPlan, select
from tests.unit.search.test_onnx_builder import _model

FLOOR = {"min_cosine": 0.98, "min_cosine_p5": 0.95}


def _select(tmp_path: Path, **floor: float):
    (tmp_path / "m.onnx").write_bytes(_model().SerializeToString())  # x [1, 3, 32, 32] -> ... -> y [1, 4]
    x = np.random.default_rng(1).normal(size=(48, 3, 32, 32)).astype(np.float32)
    graph = load(tmp_path / "m.onnx", "onnx", tmp_path)
    # Not cross-fitted (no folds): judged on 8 unlabelled evaluation samples, as a build without enough
    # calibration samples to fold is (the cross-fitting itself: tests/integration/test_crossfit.py).
    data = Datasets(Dataset({"x": x[:40]}, None, "calib"), Dataset({"x": x[40:]}, None, "eval"))
    recipe = Recipe(source=str(tmp_path / "m.onnx"), format="onnx", calib="c.npz", bench_runs=7, **floor)
    return select(graph, "onnx", [FormatPlan("onnx")], recipe, data, 1, tmp_path / "work", "uint8")


@pytest.fixture(scope="module")
def by_cosine(tmp_path_factory):
    return _select(tmp_path_factory.mktemp("cosine"), **FLOOR)


def test_the_table_the_rule_and_the_tuning_name_the_cosine_floor(by_cosine):
    block = by_cosine.block
    floor = block["criterion"]
    assert "embeddings cosine mean >= 0.98 and cosine p5 >= 0.95;" in floor and "one-sided 95 %" in floor
    # The same rule, named with the samples each judged on: the tuning, its own calibration samples.
    tuned = floor.replace("on evaluation samples", "on calibration (not held back) samples")
    assert tuned != floor and block["data"]["tuned_on"].endswith(f"by fidelity ({tuned})")
    rows = block["candidates"]
    assert len(rows) > 2 and all(0 < r["cosine_p5"] <= r["cosine_mean"] <= 1.000001 for r in rows), rows
    assert [r.judged.cosine_mean for r in by_cosine.table] == [r["cosine_mean"] for r in rows]


def test_rows_below_the_cosine_floor_are_not_chosen_and_say_so(tmp_path):
    """p5 >= 1 (the highest floor allowed): only a candidate that reproduces every output vector's direction
    meets it, which int8 never does."""
    selection = _select(tmp_path, min_cosine_p5=1.0)
    rows = {r["name"]: r for r in selection.block["candidates"]}
    assert selection.block["variant"] == "float32" and rows["float32"]["cosine_p5"] == 1.0
    for name in ("int8", "dynamic"):
        verdict = rows[name]["verdict"]
        assert f"cosine p5 {rows[name]['cosine_p5']:.6g} < 1" in verdict, rows[name]
        assert "< 1: below the fidelity floor" in verdict, rows[name]
        assert rows[name]["short"].startswith("below floor")


def test_without_a_floor_each_output_is_judged_by_its_kind_on_every_held_back_sample(tmp_path):
    block = _select(tmp_path).block
    # Nothing was held back here (8 evaluation samples judge): the rule names the samples it was judged on, as
    # judged_by does, and the search's own decisions were judged on the samples they calibrated on.
    assert block["criterion"].startswith("each output by its kind, on evaluation samples")
    assert block["data"]["judged_by"] == "evaluation"
    assert "by fidelity (each output by its kind, on calibration (not held back) samples" in block["data"]["tuned_on"]
    assert "values SQNR >= 30 dB" in block["criterion"]
    rows = block["candidates"]
    assert all(r["samples"] == 8 and len(r["kinds"]) == 1 for r in rows), rows  # one output, 8 evaluation samples
    assert all(r["cosine_mean"] is not None for r in rows)  # measured either way
