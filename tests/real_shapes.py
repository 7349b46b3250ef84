"""Small models shaped like the real pretrained ones that did not build (issue 12), built in seconds, seeded.

mini_xception   a Keras-2-era emotion classifier (64x64x1; Conv2D, SeparableConv2D, BatchNormalization,
                residual Adds, GlobalAveragePooling, softmax; 58k params) saved as legacy .h5, with the
                pathology of the real file: one channel of the first conv is dead (weight decay left its
                weights near 1e-33, its BatchNormalization variance near 1e-36, and the next conv's weights
                from it near 1e-33). Cross-layer equalisation multiplied those two ranges in float32,
                which underflows to 0 and made the channel's scale 1/0 = inf.
yolo_like       a PyTorch-style detector: `images [batch, 3, height, width]`, SiLU convs, and two outputs
                (boxes [batch, 4, anchors] in pixels, class scores [batch, 3, anchors] in [0, 1]) reshaped
                with the Shape -> Gather -> Concat -> Reshape chain torch.onnx.export writes for view().
text_direction  a PaddleOCR-style text-direction classifier: `x [-1, 3, 48, -1]`, every weight in a
                `Constant` node, Conv + BatchNormalization + ReLU, softmax over 2 classes.
mobilenet_v2    keras.applications.MobileNetV2 with random weights (alpha 0.35, 32x32): near-uniform softmax.
The ONNX heads are fitted to the data (nearest class mean) so that outputs vary as a trained model's do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .synthetic import images

DEAD = 1e-33  # what weight decay leaves of a dead channel's weights (the real file: 2.2e-33 and 1.4e-33)


def image_data(seed: int, count: int, height: int, width: int, channels: int, nchw: bool,
               prototypes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] around a few prototypes (synthetic.images), any size, NCHW or NHWC."""
    rng = np.random.default_rng(seed)
    side = max(height, width)
    x, labels = images(rng, count, size=side - side % 4, channels=channels, prototypes=prototypes)
    x = np.pad(x, ((0, 0), (0, side - x.shape[1]), (0, side - x.shape[2]), (0, 0)), mode="edge")[:, :height, :width]
    x = x.astype(np.float32)
    return (x.transpose(0, 3, 1, 2).copy() if nchw else x), labels


# --- Keras ---------------------------------------------------------------------------------------------------

def mini_xception(keras: Any, path: Path, x: np.ndarray, seed: int = 0, classes: int = 7) -> Path:
    """The mini-Xception of the real emotion model, BN statistics set from x, one dead channel; saved as .h5."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((64, 64, 1), name="input_1")
    h = layers.Conv2D(8, 3, use_bias=False, name="conv2d_1")(inp)
    h = layers.Activation("relu", name="activation_1")(layers.BatchNormalization(name="batch_normalization_1")(h))
    h = layers.Conv2D(8, 3, use_bias=False, name="conv2d_2")(h)
    h = layers.Activation("relu", name="activation_2")(layers.BatchNormalization(name="batch_normalization_2")(h))
    for filters in (16, 32, 64, 128):  # explicit names: Keras' own counters depend on what else was built
        f = f"module_{filters}"
        residual = layers.BatchNormalization(name=f"{f}_residual_bn")(
            layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=f"{f}_residual")(h))
        h = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{f}_sep_1")(h)
        h = layers.Activation("relu", name=f"{f}_relu")(layers.BatchNormalization(name=f"{f}_bn_1")(h))
        h = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{f}_sep_2")(h)
        h = layers.BatchNormalization(name=f"{f}_bn_2")(h)
        h = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{f}_pool")(h)
        h = layers.Add(name=f"{f}_add")([h, residual])
    h = layers.Conv2D(classes, 3, padding="same", name="conv2d_7")(h)
    h = layers.GlobalAveragePooling2D(name="global_average_pooling2d_1")(h)
    model = keras.Model(inp, layers.Activation("softmax", name="predictions")(h))
    _kill_channel(model, channel=3)
    _set_bn_statistics(keras, model, x)
    model.save(path)  # .h5: Keras' legacy HDF5 format, as Keras 2 wrote it
    return path


def _kill_channel(model: Any, channel: int) -> None:
    """conv2d_1's output `channel` and conv2d_2's weights reading it: near 1e-33, as in the real file."""
    first, second = model.get_layer("conv2d_1"), model.get_layer("conv2d_2")
    (k1,) = first.get_weights()
    k1[..., channel] *= DEAD
    first.set_weights([k1])
    (k2,) = second.get_weights()
    k2[:, :, channel, :] *= DEAD
    second.set_weights([k2])


def _set_bn_statistics(keras: Any, model: Any, x: np.ndarray) -> None:
    """Each BatchNormalization's moving mean / variance measured on x, layer by layer (what training leaves):
    the dead channel's variance comes out near 1e-36, its mean near 1e-33."""
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        seen = keras.Model(model.inputs, layer.input).predict(x, verbose=0).astype(np.float64)
        seen = seen.reshape(-1, seen.shape[-1])
        gamma, beta, _, _ = layer.get_weights()
        rng = np.random.default_rng(len(gamma))
        gamma = rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32)
        beta = rng.normal(0, 0.2, beta.shape).astype(np.float32)
        layer.set_weights([gamma, beta, seen.mean(0).astype(np.float32), seen.var(0).astype(np.float32)])


def mobilenet_v2(keras: Any, path: Path, seed: int = 0, size: int = 32) -> Path:
    """MobileNetV2 as benchmarked before training: random weights, 1000 near-uniform softmax outputs."""
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=1000)
    model.save(path)
    return path


# --- ONNX ----------------------------------------------------------------------------------------------------

def _conv(rng: np.random.Generator, name: str, cin: int, cout: int, k: int) -> dict[str, np.ndarray]:
    fan_in = cin * k * k
    return {f"{name}.weight": rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin, k, k)).astype(np.float32),
            f"{name}.bias": rng.normal(0, 0.05, (cout,)).astype(np.float32)}


def _silu(x: str, out: str) -> list[Any]:
    return [helper.make_node("Sigmoid", [x], [f"{out}_sig"]), helper.make_node("Mul", [x, f"{out}_sig"], [out])]


def _model(nodes: list[Any], weights: dict[str, np.ndarray], inputs: list[Any], outputs: list[Any],
           as_constants: bool = False) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    if as_constants:
        nodes = [helper.make_node("Constant", [], [t.name], value=t) for t in tensors] + nodes
        tensors = []
    graph = helper.make_graph(nodes, "model", inputs, outputs, tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def yolo_like(x: np.ndarray, seed: int = 0) -> onnx.ModelProto:
    """images [batch, 3, height, width] -> 2 SiLU convs (stride 2) -> boxes [batch, 4, anchors] (pixels) and
    scores [batch, 3, anchors] (sigmoid), each head reshaped by a Shape-derived target shape."""
    rng = np.random.default_rng(seed)
    w = {**_conv(rng, "stem", 3, 8, 3), **_conv(rng, "body", 8, 16, 3), **_conv(rng, "box", 16, 4, 1),
         **_conv(rng, "cls", 16, 3, 1)}
    w.update({"idx0": np.array([0], np.int64), "four": np.array([4], np.int64), "three": np.array([3], np.int64),
              "rest": np.array([-1], np.int64), "stride": np.array(16.0, np.float32),
              "centre": np.array(160.0, np.float32)})
    nodes = [helper.make_node("Conv", ["images", "stem.weight", "stem.bias"], ["c1"], strides=[2, 2],
                              pads=[1, 1, 1, 1]), *_silu("c1", "a1"),
             helper.make_node("Conv", ["a1", "body.weight", "body.bias"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             *_silu("c2", "a2"),
             helper.make_node("Conv", ["a2", "box.weight", "box.bias"], ["box_raw"]),
             helper.make_node("Mul", ["box_raw", "stride"], ["box_px"]),
             helper.make_node("Add", ["box_px", "centre"], ["box_map"]),
             helper.make_node("Conv", ["a2", "cls.weight", "cls.bias"], ["cls_raw"]),
             helper.make_node("Sigmoid", ["cls_raw"], ["cls_map"]),
             # torch: b = x.shape[0]; boxes = box_map.view(b, 4, -1)
             helper.make_node("Shape", ["images"], ["in_shape"]),
             helper.make_node("Gather", ["in_shape", "idx0"], ["b"], axis=0),
             helper.make_node("Concat", ["b", "four", "rest"], ["box_shape"], axis=0),
             helper.make_node("Concat", ["b", "three", "rest"], ["cls_shape"], axis=0),
             helper.make_node("Reshape", ["box_map", "box_shape"], ["boxes"]),
             helper.make_node("Reshape", ["cls_map", "cls_shape"], ["scores"])]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 4, "anchors"]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3, "anchors"])]
    model = _model(nodes, w, inputs, outputs)
    return _spread_scores(model, w, x, nodes, inputs, outputs)


def _spread_scores(model: onnx.ModelProto, w: dict[str, np.ndarray], x: np.ndarray, nodes: list[Any],
                   inputs: list[Any], outputs: list[Any]) -> onnx.ModelProto:
    """Scale the class head so its logits have std 2 on x (scores spread over (0, 1) as a trained head's)."""
    logits = _run(model, {"images": x}, "cls_raw")
    w["cls.weight"] = (w["cls.weight"] * 2.0 / max(float(logits.std()), 1e-6)).astype(np.float32)
    w["cls.bias"] = np.zeros_like(w["cls.bias"])
    return _model(nodes, w, inputs, outputs)


def text_direction(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> onnx.ModelProto:
    """x [-1, 3, 48, -1] -> Conv -> BatchNormalization -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten
    -> Gemm -> Softmax, every weight in a Constant node; the head is the nearest-class-mean classifier."""
    rng = np.random.default_rng(seed)
    w = {**_conv(rng, "c1", 3, 8, 3), **_conv(rng, "c2", 8, 16, 3),
         "bn.scale": rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn.bias": rng.normal(0, 0.1, 8).astype(np.float32),
         "bn.mean": rng.normal(0, 0.1, 8).astype(np.float32), "bn.var": rng.uniform(0.5, 2.0, 8).astype(np.float32),
         "fc.weight": np.zeros((2, 16), np.float32), "fc.bias": np.zeros(2, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "c1.weight", "c1.bias"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "c2.weight", "c2.bias"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 48, -1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 2])]
    features = _run(_model(nodes, w, inputs, outputs), {"x": x}, "f").astype(np.float64)
    classes = labels % 2
    means = np.stack([features[classes == k].mean(axis=0) for k in range(2)])
    centre = means.mean(axis=0)
    kernel = means - centre
    bias = -0.5 * ((means**2).sum(axis=1) - (centre**2).sum())
    scale = 4.0 / max(float((features @ kernel.T + bias).std()), 1e-12)
    w["fc.weight"], w["fc.bias"] = (kernel * scale).astype(np.float32), (bias * scale).astype(np.float32)
    return _model(nodes, w, inputs, outputs, as_constants=True)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray], tensor: str) -> np.ndarray:
    """One intermediate tensor of the float model on the feed (onnxruntime, the tensor made an output)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([tensor], feed)[0]


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path
