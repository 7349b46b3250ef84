"""Keras side of recovery after pruning: distillation, fine-tuning, least-squares reconstruction.

distill: the pruned model (student) learns the original model's (teacher's) outputs on the
calibration data; no labels needed. Because the teacher can label ANY input, each epoch sees
freshly augmented inputs (mixup of two samples; for images also a shift of up to 2 pixels), which
is what lets a few hundred calibration samples stand in for a training set.
finetune: the same loop with the user's labels instead of the teacher.
reconstruct: compiler/prune/recover.py's least-squares re-fit, fed with this model's activations.
BatchNormalization trains with momentum 0.9: 0.99 does not converge on small data (FACTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgekiln.compiler.prune import recover as ls
from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.tf_env import import_keras, import_tf

EPOCHS = 8
BATCH = 32
LEARNING_RATE = 1e-3
BN_MOMENTUM = 0.9
MAX_SHIFT = 2  # pixels, for 4-D image inputs


def distill(student: Any, teacher: Any, x: np.ndarray, epochs: int = EPOCHS, seed: int = 0) -> dict:
    """Train `student` in place towards `teacher`'s outputs on augmented `x`; returns the cost."""
    keras = import_keras()
    rng = np.random.default_rng(seed)
    probabilities = _looks_like_probabilities(teacher.predict(x[:64], verbose=0))
    loss = keras.losses.KLDivergence() if probabilities else keras.losses.MeanSquaredError()

    def epoch() -> tuple[np.ndarray, None]:
        partner = x[rng.permutation(len(x))]
        lam = rng.beta(0.4, 0.4, size=(len(x),) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return np.concatenate([_shift(x, rng), _shift(lam * x + (1 - lam) * partner, rng)]), None

    return _train(student, teacher, loss, epoch, epochs, rng, {"method": "distill", "samples": len(x),
                                                              "loss": type(loss).__name__, "augment": "shift+mixup"})


def finetune(model: Any, x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS, seed: int = 0) -> dict:
    """Train `model` in place on labelled data (sparse integer labels), with shifted inputs."""
    keras = import_keras()
    rng = np.random.default_rng(seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not _looks_like_probabilities(
        model.predict(x[:64], verbose=0)))
    return _train(model, None, loss, lambda: (_shift(x, rng), y), epochs, rng,
                  {"method": "finetune", "samples": len(x), "loss": type(loss).__name__, "augment": "shift"})


def _shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translate NHWC images by up to MAX_SHIFT pixels (zero fill); other inputs unchanged."""
    if x.ndim != 4 or min(x.shape[1:3]) <= 4 * MAX_SHIFT:
        return x
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, len(x)))
    h, w = x.shape[1:3]
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])


def _looks_like_probabilities(y: np.ndarray) -> bool:
    return bool(y.ndim == 2 and y.min() >= 0 and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))


def _train(model: Any, teacher: Any, loss: Any, epoch_data: Callable[[], tuple[np.ndarray, Any]], epochs: int,
           rng: np.random.Generator, facts: dict) -> dict:
    """Adam with cosine decay; a plain tf.function step (Keras' fit() traced 2x slower here)."""
    tf, keras = import_tf(), import_keras()
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = BN_MOMENTUM
    inputs, targets = epoch_data()
    batches = max(1, len(inputs) // BATCH)  # whole batches only: one traced shape
    schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, decay_steps=epochs * batches, alpha=0.05)
    optimizer = keras.optimizers.Adam(schedule)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def step(xb: Any, yb: Any) -> Any:
        target = teacher(xb, training=False) if teacher is not None else yb
        with tf.GradientTape() as tape:
            value = loss(target, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables, strict=True))
        return value

    start = time.perf_counter()
    for k in range(epochs):
        if k:
            inputs, targets = epoch_data()
        order = rng.permutation(len(inputs))
        for b in range(batches):
            idx = order[b * BATCH:(b + 1) * BATCH]
            step(tf.constant(inputs[idx]), tf.constant(0.0 if targets is None else targets[idx]))
    return {**facts, "epochs": epochs, "batch": BATCH, "learning_rate": LEARNING_RATE,
            "seconds": round(time.perf_counter() - start, 2)}


def reconstruct(pruned: Any, original: Any, analysis: Analysis, plan: Plan, x: np.ndarray, seed: int = 0) -> dict:
    """Re-fit, in topological order, every conv/dense layer downstream of a removed channel."""
    keras = import_keras()
    start = time.perf_counter()
    layers = ls.affected(analysis, plan)
    if not layers:
        return {"method": "reconstruct", "layers": 0, "samples": len(x), "seconds": 0.0}
    probe = keras.Model(original.inputs, [original.get_layer(n).input for n in layers])
    originals = dict(zip(layers, _as_list(probe.predict(x, batch_size=256, verbose=0)), strict=True))
    current = keras.Model(pruned.inputs, [pruned.get_layer(n).input for n in layers])
    for k, name in enumerate(layers):
        x_pruned = _as_list(current.predict(x, batch_size=256, verbose=0))[k]
        layer, source = pruned.get_layer(name), original.get_layer(name)
        weights = source.get_weights()
        bias = weights[1] if len(weights) > 1 else None
        bn = None if bias is not None else _batchnorm_after(analysis, name)
        node = analysis.graph.node(name)
        kernel, new_bias = ls.reconstruct(originals[name], x_pruned, analysis.mask(node.inputs[0], plan),
                                          analysis.mask(name, plan), weights[0],
                                          np.zeros(weights[0].shape[-1]) if bn else bias, _geometry(source), seed + k)
        if bn:  # a conv without bias feeding a BatchNormalization: its fitted bias goes into the BN's mean
            bn_weights = pruned.get_layer(bn).get_weights()
            bn_weights[-2] = (bn_weights[-2] - new_bias).astype(bn_weights[-2].dtype)  # (y + b - m) = (y - (m - b))
            pruned.get_layer(bn).set_weights(bn_weights)
            new_bias = None
        layer.set_weights([kernel] + ([new_bias] if new_bias is not None else []))
    return {"method": "reconstruct", "layers": len(layers), "samples": len(x),
            "seconds": round(time.perf_counter() - start, 2)}


def _batchnorm_after(analysis: Analysis, name: str) -> str | None:
    """The BatchNormalization that is the only reader of `name`, if there is one."""
    readers = [n for n in analysis.graph.nodes if name in n.inputs]
    return readers[0].name if len(readers) == 1 and readers[0].op == "BatchNormalization" else None


def _as_list(outputs: Any) -> list[np.ndarray]:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _geometry(layer: Any) -> ls.Geometry:
    if type(layer).__name__ != "Conv2D":
        return ls.Geometry()
    kh, kw = layer.kernel_size
    stride, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    pads = (0, 0, 0, 0)
    if layer.padding == "same":
        h, w = layer.input.shape[1:3]
        pads = ls.Geometry.same_pads((h, w), (kh, kw), stride, dilation)
    return ls.Geometry(kh, kw, stride, dilation, pads)
