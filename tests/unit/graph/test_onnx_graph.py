"""compiler/graph/onnx_graph.py: loading, checking and normalising ONNX sources (onnxruntime, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from edgekiln.compiler.errors import InputModelError
from edgekiln.compiler.graph import detect_format, framework, onnx_graph
from tests.unit.onnx_models import conv_net, save, single_op


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_onnx_files_are_detected(tmp_path: Path) -> None:
    path = save(conv_net(), tmp_path / "m.onnx")
    assert detect_format(path) == "onnx"
    assert framework("onnx") == "onnx" and framework("saved_model") == "keras"


def test_symbolic_batch_is_fixed_and_outputs_match(tmp_path: Path) -> None:
    model = conv_net(batch="N")
    graph = onnx_graph.load(save(model, tmp_path / "m.onnx"), tmp_path)
    assert graph.inputs[0].name == "x" and graph.inputs[0].shape == (1, 3, 8, 8)
    assert graph.inputs[0].channels_first
    assert graph.output_names == ["y"]
    assert [d.dim_value for d in graph.model.graph.output[0].type.tensor_type.shape.dim] == [1, 2]
    x = np.random.default_rng(1).random((5, 3, 8, 8), np.float32)
    np.testing.assert_allclose(graph.run({"x": x})[0], _ort(model, x), rtol=1e-5, atol=1e-6)
    assert graph.params == 4 * 3 * 9 + 4 + 2 * 4 + 2
    assert graph.path.is_file() and onnx.load(str(graph.path)).graph.input[0].name == "x"


def test_recipe_batch_replaces_the_symbol(tmp_path: Path) -> None:
    graph = onnx_graph.load(save(conv_net(batch="N"), tmp_path / "m.onnx"), tmp_path, batch=4)
    assert graph.inputs[0].shape == (4, 3, 8, 8)
    x = np.random.default_rng(2).random((6, 3, 8, 8), np.float32)  # not a multiple of 4: the tail is padded
    np.testing.assert_allclose(graph.run({"x": x})[0], _ort(conv_net(), x), rtol=1e-5, atol=1e-6)


def test_fixed_batch_is_kept(tmp_path: Path) -> None:
    graph = onnx_graph.load(save(conv_net(batch=2), tmp_path / "m.onnx"), tmp_path, batch=1)
    assert graph.inputs[0].shape == (2, 3, 8, 8)


def test_constant_node_weights_become_initializers(tmp_path: Path) -> None:
    model = conv_net(weights_as_constants=True)
    assert not model.graph.initializer
    graph = onnx_graph.load(save(model, tmp_path / "m.onnx"), tmp_path)
    assert graph.constants_normalised == 4
    assert sorted(t.name for t in graph.model.graph.initializer) == ["b", "fc", "fc_b", "w"]
    assert "Constant" not in {n.op_type for n in graph.model.graph.node}
    assert graph.params == onnx_graph.param_count(conv_net())
    x = np.random.default_rng(3).random((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(graph.run({"x": x})[0], _ort(conv_net(batch=1), x), rtol=1e-5, atol=1e-6)


def test_external_data_is_inlined(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(conv_net(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    assert (tmp_path / "ext.weights").is_file()
    work = tmp_path / "work"
    work.mkdir()
    graph = onnx_graph.load(path, work)
    assert graph.params == onnx_graph.param_count(conv_net())
    assert all(not t.external_data for t in graph.model.graph.initializer)


def test_missing_external_data_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save_model(conv_net(), str(path), save_as_external_data=True, location="ext.weights",
                    size_threshold=0)
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(InputModelError, match="external data"):
        onnx_graph.load(path, tmp_path)


@pytest.mark.parametrize("content", [b"this is not a model\n" * 10, b"\x00\xff" * 50])
def test_non_onnx_file_named_onnx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.onnx"
    path.write_bytes(content)
    with pytest.raises(InputModelError, match="is not a readable ONNX model"):
        onnx_graph.load(path, tmp_path)


def test_truncated_onnx(tmp_path: Path) -> None:
    data = conv_net().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputModelError, match="truncated"):
        onnx_graph.load(path, tmp_path)


@pytest.mark.parametrize("opset", [9, 24])
def test_unsupported_opset(tmp_path: Path, opset: int) -> None:
    with pytest.raises(InputModelError, match=f"opset {opset}; edgekiln supports 11-23"):
        onnx_graph.load(save(conv_net(opset=opset), tmp_path / "m.onnx"), tmp_path)


def test_custom_domain_op_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputModelError, match="custom ops Foo of domain 'com.example'"):
        onnx_graph.load(save(single_op("Foo", domain="com.example"), tmp_path / "m.onnx"), tmp_path)


def test_op_without_onnxruntime_kernel_is_named(tmp_path: Path) -> None:
    # onnxruntime implements Hardmax for float only (measured): a double Hardmax cannot run.
    model = single_op("Hardmax", dtype=TensorProto.DOUBLE)
    with pytest.raises(InputModelError, match=r"op Hardmax \(version 13\) has no onnxruntime .* CPU kernel"):
        onnx_graph.load(save(model, tmp_path / "m.onnx"), tmp_path)


def test_dynamic_spatial_axis_without_a_size_is_refused_with_the_way_out(tmp_path: Path) -> None:
    model = conv_net()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(InputModelError, match=r"input 'x' \[N, 3, height, 8\] has dynamic axes 2") as caught:
        onnx_graph.load(save(model, tmp_path / "m.onnx"), tmp_path)
    assert "pass --input-shape x=1,3,N,8" in caught.value.one_line()


def test_invalid_graph_fails_the_checker(tmp_path: Path) -> None:
    model = conv_net()
    model.graph.node[1].input[0] = "no_such_tensor"
    with pytest.raises(InputModelError, match="not a valid ONNX model"):
        onnx_graph.load(save(model, tmp_path / "m.onnx"), tmp_path)


def test_an_untyped_onnx_input_is_a_one_line_error(tmp_path):
    """elem_type 0 (UNDEFINED), as a bit-flipped file had it (test_readers_fuzz): no KeyError traceback."""
    model = conv_net()
    model.graph.input[0].type.tensor_type.elem_type = 0
    with pytest.raises(InputModelError, match="ONNX input 'x' has no tensor type onnx knows \\(elem_type 0\\)"):
        onnx_graph.input_specs(model)
