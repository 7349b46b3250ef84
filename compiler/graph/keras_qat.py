"""Quantization-aware fine-tuning in Keras 3 (no tfmot: it does not support Keras 3), exported as ordinary int8.

1. fold: every BatchNormalization that is the only reader of a Conv2D / DepthwiseConv2D / Dense without an
   activation is folded into it, the way the TFLite converter folds it (s = gamma / sqrt(var + eps):
   w' = w * s per output channel, b' = (b - mean) * s + beta), and left in place as an identity (gamma 1,
   beta 0, mean 0, variance 1 - eps: exactly x, frozen; the converter folds it away again). What trains is then
   what the converter will quantize, in the graph the user gave.
2. train: the folded model with a fake-quantizer after every layer's output (8 bits, asymmetric: the converter's
   int8 activations), its range first set from the calibration samples (min / max clipped at the 99.99th
   percentile of |x|, recipe.PERCENTILE: a few outlier channels must not take the other channels' steps)
   and then learned (TensorFlow's fake-quant gradient moves a bound when values clipped at it would lower the
   loss); and per-channel symmetric int8 weights (scale max|w| / 127 per output channel, the converter's weight
   quantization), by the straight-through estimator: each step runs on the quantized kernels and applies the
   gradient to the float ones. The loss is the distillation mix of graph/keras_distill.py towards the float
   model (T = QAT_TEMPERATURE), with the labels when given.
3. export: the folded model with the trained float kernels goes through the same TFLite int8 quantizer as every
   int8 candidate, so the shipped file is an ordinary int8 model; the converter's per-channel weight scales are
   the ones trained against, and its activation ranges are the trained ones (`ranges`, written into the
   calibrated model by search/qat_builder.py): recalibrating by min / max would undo the clipping QAT trained
   for (measured on mnist_resnet_outliers.keras, docs/architecture.md).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.graph import keras_distill, keras_recover
from edgekiln.compiler.graph.keras_prune import graph_model
from edgekiln.compiler.keras_types import KerasLayer, KerasModel
from edgekiln.compiler.recipe import PERCENTILE
from edgekiln.compiler.tf_env import import_keras, import_tf

if TYPE_CHECKING:
    from tensorflow import Tensor

EPOCHS = 3
BATCH = 32
LEARNING_RATE = 1e-4  # fine-tuning a trained model: small steps
QAT_TEMPERATURE = 2.0
_FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
_FUSED = ("linear", "relu", "relu6")  # activations the converter fuses into the producing op
_NOT_QUANTIZED = ("InputLayer", "Dropout", "Flatten", "Reshape",  # pass values through unchanged
                  "MaxPooling2D")  # its int8 output keeps its input's scale (the converter ties them)


def fold(model: KerasModel) -> tuple[KerasModel, list[str]]:
    """A copy of `model` with each foldable BatchNormalization folded into its producer; the folded BN names."""
    keras, graph = import_keras(), graph_model(model)
    pairs = _foldable(graph)

    def rebuild(layer: KerasLayer) -> KerasLayer:
        config = layer.get_config()
        config.pop("build_config", None)
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=rebuild)
    for layer in graph.operations:
        weights = layer.get_weights()
        if layer.name in pairs:
            folded.get_layer(layer.name).set_weights(_folded(layer, graph.get_layer(pairs[layer.name])))
        elif layer.name in pairs.values():
            folded.get_layer(layer.name).set_weights(_identity(layer))
        elif weights:
            folded.get_layer(layer.name).set_weights(weights)
    return folded, list(pairs.values())


def _identity(bn: KerasLayer) -> list[np.ndarray]:
    """A BatchNormalization's weights that make it pass x through: (x - 0) / sqrt(1 - eps + eps) * 1 + 0."""
    values = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0 - bn.epsilon}
    return [np.full(w.shape, values[w.path.split("/")[-1]], np.float32) for w in bn.weights]


def _foldable(graph: KerasModel) -> dict[str, str]:
    """producer name -> the BatchNormalization it alone feeds (channels last, producer without activation)."""
    readers: dict[str, list[KerasLayer]] = {}
    for layer in graph.operations:
        for node in layer._inbound_nodes:  # noqa: SLF001  (Keras keeps no public list of a layer's parents)
            for tensor in node.input_tensors:
                readers.setdefault(tensor._keras_history.operation.name, []).append(layer)  # noqa: SLF001
    pairs = {}
    for layer in graph.operations:
        after = readers.get(layer.name, [])
        if (type(layer).__name__ in _FOLDS_INTO and len(after) == 1 and type(after[0]).__name__ ==
                "BatchNormalization" and getattr(layer.activation, "__name__", "") == "linear"
                and after[0].axis in (-1, len(after[0].input.shape) - 1)):
            pairs[layer.name] = after[0].name
    return pairs


def _folded(producer: KerasLayer, bn: KerasLayer) -> list[np.ndarray]:
    weights = [np.asarray(w, np.float64) for w in producer.get_weights()]
    stats = dict(zip([v.path.split("/")[-1] for v in bn.weights], [np.asarray(w, np.float64) for w in
                                                                    bn.get_weights()], strict=True))
    channels = stats["moving_mean"].shape[0]
    scale = stats.get("gamma", np.ones(channels)) / np.sqrt(stats["moving_variance"] + bn.epsilon)
    kernel = weights[0]
    shape = kernel.shape
    kernel = (kernel.reshape(*shape[:2], -1) if type(producer).__name__ == "DepthwiseConv2D" else kernel) * scale
    bias = weights[1] if len(weights) > 1 else np.zeros(channels)
    bias = (bias - stats["moving_mean"]) * scale + stats.get("beta", np.zeros(channels))
    return [kernel.reshape(shape).astype(np.float32), bias.astype(np.float32)]


def quantize_kernel(kernel: Tensor, depthwise: bool) -> Tensor:
    """Per-channel symmetric int8 (the converter's): scale max|w| / 127 per output channel, values in [-127, 127]."""
    tf = import_tf()
    flat = tf.reshape(kernel, [-1, tf.reduce_prod(tf.shape(kernel)[2:])]) if depthwise else \
        tf.reshape(kernel, [-1, tf.shape(kernel)[-1]])
    scale = tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-12) / 127.0
    return tf.reshape(tf.clip_by_value(tf.round(flat / scale), -127.0, 127.0) * scale, tf.shape(kernel))


@functools.cache
def _fake_quant_class() -> type:
    """The activation fake-quantizer layer (made once Keras is imported)."""
    keras, tf = import_keras(), import_tf()

    class ActivationQuantizer(keras.layers.Layer):  # type: ignore[name-defined]
        """8-bit fake quantization of its input; range from calibration, then learned (trainable bounds)."""

        def build(self, shape: Any) -> None:
            self.low = self.add_weight(shape=(), initializer="zeros", trainable=True, name="low")
            self.high = self.add_weight(shape=(), initializer="ones", trainable=True, name="high")

        def call(self, x: Tensor, training: bool = False) -> Tensor:
            # the bounds stay around 0 as the converter's do (zero is exactly representable)
            low = tf.minimum(self.low, 0.0)
            high = tf.maximum(self.high, low + 1e-3)  # as `ranges` reads them back
            return tf.quantization.fake_quant_with_min_max_vars(x, low, high, num_bits=8)

    return ActivationQuantizer


def fake_quantized(folded: KerasModel, calib: np.ndarray) -> KerasModel:
    """The folded model (sharing its layers and weights) with a fake-quantizer after every layer's output, each
    range set from that output on `calib` (clipped_range)."""
    keras = import_keras()
    quantizer = _fake_quant_class()
    graph = graph_model(folded)
    watched = [layer for layer in graph.operations if type(layer).__name__ not in _NOT_QUANTIZED
               and not isinstance(layer.output, list | tuple)]
    probe = keras.Model(graph.inputs, [layer.output for layer in watched])
    outputs = probe.predict(calib, batch_size=256, verbose=0)
    ranges = {layer.name: clipped_range(o)
              for layer, o in zip(watched, outputs if isinstance(outputs, list) else [outputs], strict=True)}
    made: dict[str, KerasLayer] = {}

    def call(layer: KerasLayer, *args: Any, **kwargs: Any) -> Any:
        out = layer(*args, **kwargs)
        if layer.name not in ranges:
            return out
        made[layer.name] = quantizer(name=f"{layer.name}_fq")
        return made[layer.name](out)

    model = keras.models.clone_model(graph, clone_function=lambda layer: layer, call_function=call)
    for name, (low, high) in ranges.items():
        made[name].set_weights([np.float32(low), np.float32(high if high > low else low + 1e-3)])
    return model


def clipped_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of `values` with 0 inside, each bound clipped at the PERCENTILE of |values|."""
    top = float(np.percentile(np.abs(values), PERCENTILE))
    return max(min(float(np.min(values)), 0.0), -top), min(max(float(np.max(values)), 0.0), top)


def ranges(qat: KerasModel) -> dict[str, tuple[float, float]]:
    """layer name -> the trained (low, high) of the fake-quantizer after it: the ranges the export keeps. A layer
    with an activation the converter does not fuse into its op (softmax, sigmoid, ...) is left out: its converted
    op's output is the pre-activation tensor, whose range is not the quantizer's."""
    found = {}
    for layer in qat.layers:
        producer = qat.get_layer(layer.name.removesuffix("_fq")) if layer.name.endswith("_fq") else None
        if producer is not None and getattr(getattr(producer, "activation", None), "__name__", "linear") in _FUSED:
            low, high = (float(w) for w in layer.get_weights())
            found[layer.name.removesuffix("_fq")] = (min(low, 0.0), max(high, min(low, 0.0) + 1e-3))
    return found


def train(qat: KerasModel, teacher: KerasModel, x: np.ndarray, y: np.ndarray | None, epochs: int = EPOCHS,
          seed: int = 0) -> dict[str, object]:
    """Fine-tune `qat` in place towards `teacher` (the float model) with quantized kernels (straight-through)."""
    tf, keras = import_tf(), import_keras()
    rng = np.random.default_rng(seed)
    for layer in qat.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.trainable = False  # folded ones are identities; the others keep their trained statistics
    kernels = [(layer.kernel, type(layer).__name__ == "DepthwiseConv2D") for layer in qat.layers
               if type(layer).__name__ in _FOLDS_INTO]
    probabilities = keras_recover.looks_like_probabilities(teacher.predict(x[:64], verbose=0))
    objective = keras_distill.loss(QAT_TEMPERATURE, probabilities, y is not None)
    variables = qat.trainable_variables
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.build(variables)

    @tf.function
    def step(xb: Tensor, yb: Tensor) -> Tensor:
        floats = [tf.identity(k) for k, _ in kernels]
        for (k, depthwise), value in zip(kernels, floats, strict=True):
            k.assign(quantize_kernel(value, depthwise))
        taught = teacher(xb, training=False)
        with tf.GradientTape() as tape:
            value = objective(yb, taught, qat(xb, training=True))
        grads = tape.gradient(value, variables)
        for (k, _), kept in zip(kernels, floats, strict=True):
            k.assign(kept)  # the gradient at the quantized kernel goes to the float one
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return value

    batches = max(1, len(x) // BATCH)
    losses = []
    for _ in range(epochs):
        order, inputs = rng.permutation(len(x)), keras_recover.shift(x, rng)
        total = 0.0
        for b in range(batches):
            idx = order[b * BATCH:(b + 1) * BATCH]
            total += float(step(tf.constant(inputs[idx]), tf.constant(0.0 if y is None else y[idx])))
        losses.append(round(total / batches, 5))
    return {"epochs": epochs, "batch": BATCH, "learning_rate": LEARNING_RATE, "samples": len(x),
            "loss": f"distillation to the float model at T={QAT_TEMPERATURE:g}" + (" + labels" if y is not None
                                                                                  else ""),
            "epoch_losses": losses}
