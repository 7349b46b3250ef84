"""Keras side of recovery after pruning: distillation, fine-tuning, least-squares reconstruction.

distill: the pruned model (student) learns the original model's (teacher's) outputs on the
recovery data (--train, else the calibration samples); no labels needed. Because the teacher can
label ANY input, each epoch sees freshly augmented inputs (mixup of two samples; for images also a
shift of up to 2 pixels), which is what lets a few hundred calibration samples stand in for a
training set.
finetune: the same loop on the user's labels, plus a distillation term towards the teacher (Hinton
et al.): the labels alone on a few thousand samples pull the pruned model away from what the
original learned on the full training set.
Both hold back part of their data (HOLDOUT_SHARE, when there is enough) and stop early: after each
epoch the student is scored there, the best epoch's weights are kept, and training stops after
PATIENCE epochs without improvement (so that recovery takes minutes, not a fixed epoch count).
reconstruct: compiler/prune/recover.py's least-squares re-fit, fed with this model's activations.
BatchNormalization trains with momentum 0.9: 0.99 does not converge on small data (FACTS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from edgekiln.compiler.keras_types import KerasLayer, KerasModel
from edgekiln.compiler.prune import recover as ls
from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.recovery_facts import EarlyStopping, Reconstruction, Training, TrainingSetup
from edgekiln.compiler.tf_env import import_keras, import_tf

if TYPE_CHECKING:
    from tensorflow import Tensor  # what the training step's losses take and give (eager or traced)

Loss: TypeAlias = "Callable[[Tensor, Tensor], Tensor]"  # a Keras loss object: (targets, predictions) -> loss
Objective: TypeAlias = "Callable[[Tensor, Tensor, Tensor], Tensor]"  # (labels, teacher's outputs, student's) -> loss

EPOCHS = 8
BATCH = 32
LEARNING_RATE = 1e-3
BN_MOMENTUM = 0.9
MAX_SHIFT = 2  # pixels, for 4-D image inputs
DISTILL_WEIGHT = 0.5  # finetune: loss = CE(labels) + DISTILL_WEIGHT * distance(teacher, student)
HOLDOUT_SHARE = 0.1   # of the recovery data, held back to stop early...
MIN_HOLDOUT, MAX_HOLDOUT = 64, 1000  # ...when that is at least MIN_HOLDOUT samples (else a fixed EPOCHS)
PATIENCE = 2          # epochs without a better held-back score before stopping


def distill(student: KerasModel, teacher: KerasModel, x: np.ndarray, epochs: int = EPOCHS, seed: int = 0
            ) -> Training:
    """Train `student` in place towards `teacher`'s outputs on augmented `x`; returns the cost."""
    rng = np.random.default_rng(seed)
    x, held = hold_back(x, None, rng)
    loss = _distance(teacher.predict(x[:64], verbose=0))

    tokens = x.dtype.kind in "iu"  # token ids: a mixup of two ids is no input at all

    def epoch() -> tuple[np.ndarray, None]:
        if tokens:
            return x, None
        partner = x[rng.permutation(len(x))]
        lam = rng.beta(0.4, 0.4, size=(len(x),) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return np.concatenate([shift(x, rng), shift(lam * x + (1 - lam) * partner, rng)]), None

    def objective(target: Tensor, taught: Tensor, out: Tensor) -> Tensor:
        return loss(taught, out)

    return train(student, teacher, objective, epoch, epochs, rng, held,
                  {"method": "distill", "samples": len(x), "loss": type(loss).__name__,
                   "augment": "none (integer inputs)" if tokens else "shift+mixup"})


def finetune(model: KerasModel, teacher: KerasModel, x: np.ndarray, y: np.ndarray, epochs: int = EPOCHS,
             seed: int = 0) -> Training:
    """Train `model` in place on labelled data (sparse integer labels) with shifted inputs, plus a distillation
    term towards `teacher` (the unpruned model)."""
    keras = import_keras()
    rng = np.random.default_rng(seed)
    x, held = hold_back(x, y, rng)
    y = y if held is None or held.train_y is None else held.train_y
    sample = teacher.predict(x[:64], verbose=0)
    labels = keras.losses.SparseCategoricalCrossentropy(from_logits=not looks_like_probabilities(sample))
    distance = _distance(sample)

    def objective(target: Tensor, taught: Tensor, out: Tensor) -> Tensor:
        return labels(target, out) + DISTILL_WEIGHT * distance(taught, out)

    return train(model, teacher, objective, lambda: (shift(x, rng), y), epochs, rng, held,
                  {"method": "finetune", "samples": len(x), "loss": f"{type(labels).__name__} + "
                   f"{DISTILL_WEIGHT} x {type(distance).__name__} to the unpruned model", "augment": "shift"})


@dataclass(frozen=True)
class HeldBack:
    """The recovery data split: what trains, and what decides when to stop (labels, or the teacher's answers)."""

    train_x: np.ndarray
    train_y: np.ndarray | None
    x: np.ndarray
    y: np.ndarray | None


def hold_back(x: np.ndarray, y: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, HeldBack | None]:
    """Split off HOLDOUT_SHARE of the samples (at least MIN_HOLDOUT of them, at most MAX_HOLDOUT), or None."""
    size = min(MAX_HOLDOUT, int(len(x) * HOLDOUT_SHARE))
    if size < MIN_HOLDOUT:
        return x, None
    order = rng.permutation(len(x))
    rest, held = order[size:], order[:size]
    split = HeldBack(x[rest], None if y is None else y[rest], x[held], None if y is None else y[held])
    return split.train_x, split


def _distance(sample: np.ndarray) -> Loss:
    """KL divergence between probability outputs, else mean squared error (logits, embeddings)."""
    keras = import_keras()
    return keras.losses.KLDivergence() if looks_like_probabilities(sample) else keras.losses.MeanSquaredError()


def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Translate NHWC images by up to MAX_SHIFT pixels (zero fill); other inputs unchanged."""
    if x.ndim != 4 or min(x.shape[1:3]) <= 4 * MAX_SHIFT:
        return x
    m = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, len(x)))
    h, w = x.shape[1:3]
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])


def looks_like_probabilities(y: np.ndarray) -> bool:
    return bool(y.ndim == 2 and y.min() >= 0 and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))


def train(model: KerasModel, teacher: KerasModel, objective: Objective,
           epoch_data: Callable[[], tuple[np.ndarray, np.ndarray | None]], epochs: int, rng: np.random.Generator,
           held: HeldBack | None, facts: TrainingSetup, progress: Callable[[str], None] | None = None) -> Training:
    """Adam with cosine decay; a plain tf.function step (Keras' fit() traced 2x slower here).
    objective(labels, teacher's outputs, student's outputs) -> loss; progress: a line after each epoch."""
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
    def step(xb: Tensor, yb: Tensor) -> Tensor:
        taught = teacher(xb, training=False)
        with tf.GradientTape() as tape:
            value = objective(yb, taught, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables, strict=True))
        return value

    start = time.perf_counter()
    stopper = EarlyStop(model, teacher, held)
    for k in range(epochs):
        if k:
            inputs, targets = epoch_data()
        order = rng.permutation(len(inputs))
        for b in range(batches):
            idx = order[b * BATCH:(b + 1) * BATCH]
            step(tf.constant(inputs[idx]), tf.constant(0.0 if targets is None else targets[idx]))
        stop = stopper.after_epoch()
        if progress is not None:
            score = f", held-back score {stopper.scores[-1]:.2f}" if stopper.scores else ""
            progress(f"epoch {k + 1}/{epochs}{score}")
        if stop:
            break
    return {**facts, "epochs": epochs, "batch": BATCH, "learning_rate": LEARNING_RATE, **stopper.finish(),
            "seconds": round(time.perf_counter() - start, 2)}


class EarlyStop:
    """Scores the student on the held-back samples after each epoch (accuracy on labels, else agreement with the
    teacher's top-1 for class outputs, else negative MSE to it), keeps the best epoch's weights."""

    def __init__(self, model: KerasModel, teacher: KerasModel, held: HeldBack | None) -> None:
        self.model, self.held = model, held
        self.scores: list[float] = []
        self.best_weights: list | None = None
        if held is not None:
            self.reference = held.y if held.y is not None else teacher.predict(held.x, batch_size=256, verbose=0)

    def _score(self) -> float:
        assert self.held is not None
        out = self.model.predict(self.held.x, batch_size=256, verbose=0)
        if self.held.y is not None:
            return float(np.mean(out.argmax(-1) == self.held.y) * 100)
        if out.ndim == 2 and out.shape[1] > 1:
            return float(np.mean(out.argmax(-1) == self.reference.argmax(-1)) * 100)
        return -float(np.mean((out - self.reference) ** 2))

    def after_epoch(self) -> bool:
        """Record this epoch; True when training should stop."""
        if self.held is None:
            return False
        score = self._score()
        if not self.scores or score > max(self.scores):
            self.best_weights = self.model.get_weights()
        self.scores.append(score)
        best = int(np.argmax(self.scores))
        return len(self.scores) - 1 - best >= PATIENCE

    def finish(self) -> EarlyStopping:
        """Restore the best epoch's weights; the facts for the manifest."""
        if self.held is None:
            return {"epochs_run": None, "early_stopping": "off: too few samples to hold any back"}
        assert self.best_weights is not None
        self.model.set_weights(self.best_weights)
        best = int(np.argmax(self.scores))
        return {"epochs_run": len(self.scores), "best_epoch": best + 1, "held_back": len(self.held.x),
                "held_back_scores": [round(s, 4) for s in self.scores]}


def reconstruct(pruned: KerasModel, original: KerasModel, analysis: Analysis, plan: Plan, x: np.ndarray,
                seed: int = 0) -> Reconstruction:
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


def _as_list(outputs: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...]) -> list[np.ndarray]:
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _geometry(layer: KerasLayer) -> ls.Geometry:
    if type(layer).__name__ != "Conv2D":
        return ls.Geometry()
    kh, kw = layer.kernel_size
    stride, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
    pads = (0, 0, 0, 0)
    if layer.padding == "same":
        h, w = layer.input.shape[1:3]
        pads = ls.Geometry.same_pads((h, w), (kh, kw), stride, dilation)
    return ls.Geometry(kh, kw, stride, dilation, pads)
