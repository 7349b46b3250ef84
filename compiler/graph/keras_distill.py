"""Keras side of `edgekiln distill`: a narrower copy of the teacher, and its training on the teacher's soft targets.

The loss (Hinton et al. 2015), with z the logits (for a softmax output, log p: softmax ignores the constant
that separates them) and T the temperature:

    soft = T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T))     (T^2 keeps its gradients the size
                                                                           of the hard term's as T grows)
    loss = SOFT_WEIGHT * soft + (1 - SOFT_WEIGHT) * CE(labels, student)   with labels
    loss = soft                                                           without

The training loop, the held-back split and early stopping are the pruning recovery's (graph/keras_recover.py).
Inputs are shifted by up to 2 pixels each epoch; without labels they are also mixed up (the teacher labels any
input), as the recovery's distillation does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.graph import keras_prune, keras_recover
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.prune import width as widths
from edgekiln.compiler.prune.channels import Scores
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.recovery_facts import Training
from edgekiln.compiler.tf_env import import_keras, import_tf

if TYPE_CHECKING:
    from tensorflow import Tensor

TEMPERATURE = 4.0
SOFT_WEIGHT = 0.7
EPOCHS = 8
_EPS = 1e-7


def student(teacher: KerasModel, analysis: Analysis, scores: Scores, width: float, fresh: bool) -> KerasModel:
    """The teacher at `width` (prune/width.py), initialised from its most important channels, or fresh (the same
    layers, newly initialised)."""
    model = keras_prune.apply(teacher, analysis, widths.plan(analysis, scores, width))
    if fresh:
        model = import_keras().models.clone_model(model)  # new layers from the same configs: fresh weights
    return model


def logits(outputs: Tensor, probabilities: bool) -> Tensor:
    """Logits of a softmax output (log p, up to a per-sample constant), else the outputs as they are."""
    tf = import_tf()
    return tf.math.log(tf.clip_by_value(outputs, _EPS, 1.0)) if probabilities else outputs


def loss(temperature: float, probabilities: bool, labelled: bool
         ) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The documented mix as an objective(labels, teacher's outputs, student's outputs) -> scalar."""
    tf = import_tf()
    t = float(temperature)

    def objective(y: Tensor, taught: Tensor, out: Tensor) -> Tensor:
        zt, zs = logits(taught, probabilities) / t, logits(out, probabilities) / t
        teacher_log = tf.nn.log_softmax(zt)
        kl = tf.reduce_sum(tf.exp(teacher_log) * (teacher_log - tf.nn.log_softmax(zs)), axis=-1)
        soft = t * t * tf.reduce_mean(kl)
        if not labelled:
            return soft
        hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(tf.reshape(y, [-1]), tf.int32), logits=logits(out, probabilities)))
        return SOFT_WEIGHT * soft + (1 - SOFT_WEIGHT) * hard

    return objective


def distill(model: KerasModel, teacher: KerasModel, x: np.ndarray, y: np.ndarray | None,
            held: keras_recover.HeldBack | None, epochs: int = EPOCHS, temperature: float = TEMPERATURE,
            seed: int = 0, progress: Callable[[str], None] | None = None) -> Training:
    """Train `model` in place on `teacher`'s soft targets (and the labels y when given) over x; early stopping on
    `held` (labels when it has them, else agreement with the teacher)."""
    rng = np.random.default_rng(seed)
    probabilities = keras_recover.looks_like_probabilities(teacher.predict(x[:64], verbose=0))
    objective = loss(temperature, probabilities, y is not None)
    mix = y is None and x.dtype.kind == "f"

    def epoch() -> tuple[np.ndarray, np.ndarray | None]:
        if not mix:
            return keras_recover.shift(x, rng), y
        partner = x[rng.permutation(len(x))]
        lam = rng.beta(0.4, 0.4, size=(len(x),) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return np.concatenate([keras_recover.shift(x, rng), keras_recover.shift(lam * x + (1 - lam) * partner,
                                                                                   rng)]), None

    what = f"{SOFT_WEIGHT} x T^2 KL(teacher || student) at T={temperature:g} + {1 - SOFT_WEIGHT:.1f} x CE(labels)" \
        if y is not None else f"T^2 KL(teacher || student) at T={temperature:g}"
    return keras_recover.train(model, teacher, objective, epoch, epochs, rng, held,
                               {"method": "distill", "samples": len(x), "loss": what,
                                "augment": "shift+mixup" if mix else "shift"}, progress)
