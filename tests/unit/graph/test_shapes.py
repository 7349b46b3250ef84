"""--input-shape and the data's shape close an ONNX source's dynamic axes (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.errors import EdgekilnError, RecipeError
from edgekiln.compiler.graph import onnx_graph, shapes
from edgekiln.compiler.recipe import from_toml
from tests import real_shapes


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dynamic")
    x, _ = real_shapes.image_data(0, 24, 64, 64, 3, nchw=True)
    t, labels = real_shapes.image_data(1, 24, 48, 96, 3, nchw=True, prototypes=2)
    np.savez(root / "yolo.npz", images=x)
    np.savez(root / "text.npz", x=t)
    np.savez(root / "text_wider.npz", x=np.concatenate([t, t[..., :4]], axis=3))
    return {"yolo": real_shapes.save(real_shapes.yolo_like(x), root / "yolo.onnx"),
            "text": real_shapes.save(real_shapes.text_direction(t, labels), root / "text.onnx"),
            "yolo_data": root / "yolo.npz", "text_data": root / "text.npz", "wider": root / "text_wider.npz",
            "x": x, "t": t}


def _load(path: Path, tmp_path: Path, given: dict | None = None, data: dict | None = None) -> onnx_graph.OnnxGraph:
    return onnx_graph.load(path, tmp_path, input_shapes=given,
                           data_shapes=shapes.data_shapes({k: str(v) for k, v in (data or {}).items()}))


def test_input_shape_fixes_dynamic_height_and_width_and_folds_the_shape_arithmetic(models, tmp_path):
    graph = _load(models["yolo"], tmp_path, {"images": (1, 3, 64, 64)})
    assert graph.inputs[0].shape == (1, 3, 64, 64)
    assert graph.shape_nodes_folded >= 3  # Shape -> Gather -> Concat x2: constants now
    assert "Shape" not in {n.op_type for n in graph.model.graph.node}
    outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.model.graph.output}
    assert outputs == {"boxes": [1, 4, 256], "scores": [1, 3, 256]}  # 64/4 squared anchors, static
    boxes, scores = graph.run({"images": models["x"][:3]})
    assert boxes.shape == (3, 4, 256) and scores.shape == (3, 3, 256)
    assert graph.fixed_inputs[0].origin == "input_shape"


def test_the_data_shape_is_the_default_and_the_manifest_says_so(models, tmp_path):
    graph = _load(models["text"], tmp_path, data={"calibration data": models["text_data"]})
    assert graph.inputs[0].shape == (1, 3, 48, 96)
    assert graph.constants_normalised > 0  # weights came in Constant nodes
    fixed = graph.fixed_inputs[0]
    assert (fixed.origin, fixed.declared) == ("calibration data", "[-1, 3, 48, -1]")
    assert "from the calibration data's samples" in fixed.describe()


@pytest.mark.parametrize(("given", "data", "expected"), [
    ({"image": (1, 3, 64, 64)}, {}, "names input 'image', which yolo.onnx does not have (its inputs: images)"),
    ({"images": (1, 3, 64)}, {}, "has 3 dims, but input 'images' [batch, 3, height, width] has rank 4"),
    ({"images": (1, 4, 64, 64)}, {}, "axis 1 of input 'images' [batch, 3, height, width] is fixed to 3"),
    ({"images": (1, 3, 32, 32)}, {"calibration data": "yolo_data"}, "does not match the calibration data's samples"),
    (None, {}, "has dynamic axes 2, 3 and no .npz/.npy data gives its size"),
])
def test_input_shape_errors_are_one_line(models, tmp_path, given, data, expected):
    with pytest.raises(EdgekilnError) as caught:
        _load(models["yolo"], tmp_path, given, {k: models[v] for k, v in data.items()})
    line = caught.value.one_line()
    assert expected in line and "\n" not in line
    assert "--input-shape" in line  # the way out is named


def test_data_of_two_sizes_is_ambiguous(models, tmp_path):
    with pytest.raises(EdgekilnError, match="the data's samples differ"):
        _load(models["text"], tmp_path, data={"calibration data": models["text_data"],
                                              "evaluation data": models["wider"]})


def test_recipe_file_takes_a_table_or_a_list(tmp_path):
    table = tmp_path / "table.toml"
    table.write_text('source = "m.onnx"\ninput_shape = {images = [1, 3, 320, 320]}\n')
    listed = tmp_path / "list.toml"
    listed.write_text('source = "m.onnx"\ninput_shape = [1, 3, 48, 96]\n')
    assert from_toml(table).input_shape == {"images": (1, 3, 320, 320)}
    assert from_toml(listed).input_shape == {"": (1, 3, 48, 96)}
    assert from_toml(table).to_dict()["input_shape"] == {"images": [1, 3, 320, 320]}
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "m.onnx"\ninput_shape = {images = [1, 3, 0, 320]}\n')
    with pytest.raises(RecipeError, match="positive integer"):
        from_toml(bad)


def test_an_unnamed_shape_fits_the_only_input(models, tmp_path):
    graph = _load(models["text"], tmp_path, {"": (1, 3, 48, 64)})
    assert graph.inputs[0].shape == (1, 3, 48, 64)


def test_text_data_with_seq_len_closes_an_encoders_open_sequence_axis(tmp_path):
    """A build from sentences (.txt) has no array to read the length from: --seq-len closes every token input."""
    import onnx

    from edgekiln.compiler.pipeline import _data_shapes
    from edgekiln.compiler.recipe import Recipe
    from tests.unit.bert_onnx import tiny_bert

    model = tmp_path / "bert.onnx"
    onnx.save(tiny_bert(), str(model))
    (tmp_path / "s.txt").write_text("a sentence\n")
    recipe = Recipe(source=str(model), target="rpi4", output=str(tmp_path / "b"), calib=str(tmp_path / "s.txt"),
                    seq_len=16)
    graph = onnx_graph.load(model, tmp_path, data_shapes=_data_shapes(recipe, "onnx"))
    assert {i.name: i.shape for i in graph.inputs} == {"input_ids": (1, 16), "attention_mask": (1, 16)}
    without = Recipe(source=str(model), target="rpi4", output=str(tmp_path / "b"), calib=str(tmp_path / "s.txt"))
    assert _data_shapes(without, "onnx") == {}   # no length: the load says to pass --input-shape (as before)
