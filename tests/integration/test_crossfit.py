"""Cross-fitting in a real build's search (search/crossfit.py) on a small sample model (ONNX -> ONNX int8, no
TensorFlow): each int8 candidate is also built once per fold from the other folds' samples, every calibration
sample is judged exactly once by the fold model that never saw it, and the shipped model is calibrated (and its
search tuned) on every sample. The real builder runs; a wrapper only records what each call was given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.data import CROSS_FITTED, MIN_CALIBRATION_SAMPLES, Datasets
from edgekiln.compiler.evaluate.runner import open_model, predict
from edgekiln.compiler.folds import split
from edgekiln.compiler.graph import load
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.search import crossfit
from edgekiln.compiler.search import select as select_module
from edgekiln.compiler.search.context import BuildContext, Builds
from edgekiln.compiler.search.select import FormatPlan, select

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
N = 30  # three folds of 10 (the build default is folds.FOLDS; any k works alike): each calibrates on 20


def _ids(dataset: Dataset, index: dict[bytes, int]) -> list[int]:
    """Which of the N samples a dataset holds, in its order (each sample known by its bytes)."""
    x = dataset.inputs["image"]
    return [index[x[i].tobytes()] for i in range(x.shape[0])]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crossfit")
    with np.load(SAMPLES / "mnist_calib_nchw.npz") as f:
        x = f["x"][:N].astype(np.float32)
    index = {x[i].tobytes(): i for i in range(N)}
    assert len(index) == N  # every sample distinct
    data = Datasets(Dataset({"image": x}, None, "calib"), None, split(N, MIN_CALIBRATION_SAMPLES, k=3))
    graph = load(SAMPLES / "mnist_dwsep_nchw.onnx", "onnx", tmp)
    calls: list[tuple[BuildContext, Builds]] = []
    real = select_module.BUILDERS["onnx", "onnx"]

    def recorded(ctx: BuildContext) -> Builds:
        made = real(ctx)
        calls.append((ctx, made))
        return made

    recipe = Recipe(source=str(SAMPLES / "mnist_dwsep_nchw.onnx"), format="onnx", quantize="int8", calib="c.npz",
                    bench_runs=7)
    patch = pytest.MonkeyPatch()
    patch.setitem(select_module.BUILDERS, ("onnx", "onnx"), recorded)
    try:
        selection = select(graph, "onnx", [FormatPlan("onnx")], recipe, data, 1, tmp / "work", "uint8")
    finally:
        patch.undo()
    return selection, data, calls, index


def test_each_fold_is_calibrated_and_tuned_without_the_samples_it_judges(searched):
    _, data, calls, index = searched
    assert data.folds is not None
    folds = [(ctx, made) for ctx, made in calls if ctx.fold]
    assert len(folds) == data.folds.k
    judged: list[int] = []
    for fold, (ctx, _) in enumerate(folds):
        held = set(data.folds.judged(fold).tolist())
        assert ctx.calib is not None and set(_ids(ctx.calib, index)) == set(range(N)) - held
        assert set(_ids(ctx.judge.check, index)) == set(range(N)) - held  # its tuning decisions too
        assert all(v.quantize.value == "int8" for v in ctx.plan.build)  # float candidates are not rebuilt
        judged += sorted(held)
    assert sorted(judged) == list(range(N))  # every sample judged exactly once


def test_the_shipped_model_is_calibrated_and_tuned_on_every_sample(searched):
    selection, _, calls, index = searched
    final = [(ctx, made) for ctx, made in calls if not ctx.fold]
    assert len(final) == 1
    ctx, made = final[0]
    assert ctx.calib is not None and _ids(ctx.calib, index) == list(range(N))
    assert _ids(ctx.judge.check, index) == list(range(N))
    assert selection.model in {b.model for b in made.built if b.model is not None}


def test_the_table_judges_each_sample_by_the_fold_model_that_held_it_out(searched):
    selection, data, calls, _ = searched
    rows = {r["name"]: r for r in selection.block["candidates"]}
    assert selection.block["data"]["judged_by"] == CROSS_FITTED and selection.block["data"]["judging_samples"] == N
    assert all(r["samples"] == N for r in rows.values()), rows
    assert any("cross-fitted" in n for n in rows["int8"]["notes"]) and not any(
        "cross-fitted" in n for n in rows["float32"]["notes"])
    assert selection.judged_outputs is not None and data.folds is not None
    shipped = selection.shipped.variant.name
    for fold, made in enumerate(m for c, m in calls if c.fold):
        built = {b.variant.name: b for b in made.built if b.model is not None}
        model = crossfit._stand_in(selection.shipped.variant, built)  # the fold's own, or what stood in for it
        assert model is not None and (model.variant.name == shipped or any(
            f"fold {fold + 1}: {model.variant.name}" in n for n in selection.shipped.notes))
        outputs = predict(open_model("onnx", model.model or b"", 1, model.layouts), data.fold_judged(fold))
        assert np.array_equal(selection.judged_outputs[0][data.folds.judged(fold)], outputs[0]), fold


def _embedder_build(tmp_path: Path, samples: int, evaluation: bool) -> tuple[dict, str]:
    """A 2-layer ONNX MLP built int8 from `samples` calibration samples (too few to fold below 15), with 8
    unlabelled evaluation samples or none: the manifest and the printed summary."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekiln.compiler import summary
    from edgekiln.compiler.console import console
    from edgekiln.compiler.pipeline import build

    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(0, 0.3, (16, 8)), "b": np.zeros(16)}
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=rng.normal(size=(samples, 8)).astype(np.float32))
    np.savez(tmp_path / "e.npz", x=rng.normal(size=(8, 8)).astype(np.float32))
    result = build(Recipe(source=str(tmp_path / "m.onnx"), target="rpi4", calib=str(tmp_path / "c.npz"),
                          eval=str(tmp_path / "e.npz") if evaluation else None, output=str(tmp_path / "b"),
                          format="onnx", quantize="int8", bench_runs=7))
    patch = pytest.MonkeyPatch()
    patch.setattr(console, "width", 250)
    try:
        with console.capture() as captured:
            summary.print_build_summary(result)
    finally:
        patch.undo()
    return json.loads((result.output / "manifest.json").read_text()), captured.get()


@pytest.mark.parametrize(("evaluation", "judged_by", "judged"), [(False, "calibration (not held back)", 12),
                                                                 (True, "evaluation", 8)])
def test_too_few_samples_to_hold_back_say_so_and_judge_on_evaluation_data_when_given(tmp_path, evaluation,
                                                                                     judged_by, judged):
    manifest, shown = _embedder_build(tmp_path, 12, evaluation)
    data = manifest["quantization"]["data"]
    assert data["judged_by"] == judged_by and data["judging_samples"] == judged and data["folds"] == 0
    assert manifest["fidelity"]["samples_from"] == judged_by and manifest["fidelity"]["samples"] == judged
    assert f"fidelity vs source ({judged} {judged_by} samples" in shown, shown
    # the rule names the samples it judged on as judged_by does: never "held-back" when nothing was held back
    assert f"each output by its kind, on {judged_by} samples:" in manifest["quantization"]["criterion"]
    flattered = [w for w in manifest["warnings"] if "calibrated on" in w]
    assert len(flattered) == (0 if evaluation else 1), manifest["warnings"]
    assert all(r["samples"] == judged for r in manifest["quantization"]["candidates"])
