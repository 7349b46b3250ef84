"""What a recovery step after channel pruning reports, whichever framework ran it: the manifest's
pruning.recovery.steps entries (JSON: the keys below, in the order the steps write them).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class Reconstruction(TypedDict):
    """Least-squares reconstruction (graph/keras_recover.py, graph/onnx_recover.py: compiler/prune/recover.py's
    solve): how many conv / dense layers were re-fitted, from how many samples, in how many seconds."""

    method: str  # "reconstruct"
    layers: int
    samples: int
    seconds: float


class TrainingSetup(TypedDict):
    """What a trained recovery (distill / finetune) learned from and with: the first keys of its facts."""

    method: str  # "distill" or "finetune"
    samples: int  # the samples trained on (the held-back ones excluded)
    loss: str
    augment: str


class EarlyStopping(TypedDict):
    """How training stopped: epochs_run None and early_stopping's reason when too few samples could be held back;
    otherwise the epochs run, the best one (whose weights were kept) and the held-back score of each."""

    epochs_run: int | None
    early_stopping: NotRequired[str]
    best_epoch: NotRequired[int]
    held_back: NotRequired[int]
    held_back_scores: NotRequired[list[float]]


class Training(TrainingSetup, EarlyStopping):
    """A trained recovery's facts: its setup, the schedule (epochs at most, batch, learning rate), how it stopped,
    and its seconds."""

    epochs: int
    batch: int
    learning_rate: float
    seconds: float


class Distillation(Training):
    """The slimmed encoder distilled towards the source (encoder_slimming.KerasKit.distill; the manifest's
    pruning.distillation): the training's facts, the output cosine to the source before and after, and whether
    the distilled weights were kept (`note`: why they were undone)."""

    output_cosine_before: float
    output_cosine_after: float
    kept: bool
    note: NotRequired[str]
