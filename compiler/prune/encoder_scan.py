"""prune-scan for encoders: what each attention head and each encoder block is worth, measured one at a time.

Framework-free (numpy): the adapter hands over how to run a model, a context that masks one head (its
output-projection slice zeroed: its contribution gone, exactly as removal takes it), and a model with one
block skipped (the residual stream passes through); compiler/commands/prune_scan.py holds the two adapters
(Keras: keras_heads / keras_layers; ONNX: onnx_heads / onnx_layers, run in onnxruntime). Nothing is
re-fitted, as the channel scan re-fits nothing: the figures rank heads and blocks, they are not the drop
`--prune-heads` / `--drop-layers` would leave after their least-squares re-fit (which is far smaller).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, TypeVar

import numpy as np

from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.prune.encoder_auto import judge_with

ModelT = TypeVar("ModelT")  # the framework's model: a Keras model or an onnx.ModelProto


class AblationFacts(TypedDict):
    """An Ablation as prune-scan's JSON records it: what was taken out, its parameters, the quality left."""

    kind: str
    layer: str
    index: int
    params: int
    accuracy_drop: float | None
    cosine_mean: float | None
    cosine_p5: float | None
    score: float | None


class EncoderScanFacts(TypedDict):
    """An EncoderScan as `prune-scan --json` writes it (kind `encoder`)."""

    kind: str
    metric: str
    reference: float | None
    samples: int
    heads: list[AblationFacts]
    blocks: list[AblationFacts]


@dataclass(frozen=True)
class Ablation:
    """One head (index within its layer) or one block (index in the encoder) taken out alone, and the
    quality left (its accuracy_drop in points with labels, its cosines to the unmasked model)."""

    kind: str      # "head" or "block"
    layer: str     # the attention layer's name; for a block, its attention layer's
    index: int
    params: int    # parameters it holds
    quality: Quality
    score: float | None = None  # heads: the pruner's criterion (mean squared contribution to the layer output)

    def to_dict(self) -> AblationFacts:
        q = self.quality
        return {"kind": self.kind, "layer": self.layer, "index": self.index, "params": self.params,
                "accuracy_drop": q.accuracy_drop, "cosine_mean": q.cosine_mean, "cosine_p5": q.cosine_p5,
                "score": self.score}


@dataclass(frozen=True)
class EncoderScan:
    """The whole scan; `reference` is the unmasked model's accuracy (None without labels)."""

    reference: float | None
    samples: int
    heads: tuple[Ablation, ...]
    blocks: tuple[Ablation, ...]

    @property
    def metric(self) -> str:
        return "accuracy" if self.reference is not None else "cosine"

    def to_dict(self) -> EncoderScanFacts:
        return {"kind": "encoder", "metric": self.metric, "reference": self.reference, "samples": self.samples,
                "heads": [r.to_dict() for r in self.heads], "blocks": [r.to_dict() for r in self.blocks]}


def scan(predict: Callable[[ModelT], np.ndarray], source: ModelT, labels: np.ndarray | None,
         heads: Mapping[str, tuple[np.ndarray, int]],
         mask_head: Callable[[str, int], contextlib.AbstractContextManager[ModelT]],
         blocks: Sequence[tuple[str, int]], without_block: Callable[[int], ModelT], samples: int) -> EncoderScan:
    """Every head of every layer in `heads` (name -> (scores, params per head)) masked alone, then every block
    of `blocks` ((attention layer, params) in order) skipped alone, each judged against the unmasked model."""
    judge, reference = judge_with(predict, source, labels)

    def row(kind: str, layer: str, index: int, params: int, q: Quality, score: float | None = None) -> Ablation:
        drop = None if q.accuracy is None or reference.accuracy is None else round(reference.accuracy - q.accuracy, 3)
        return Ablation(kind, layer, index, params, Quality(accuracy_drop=drop, cosine_mean=q.cosine_mean,
                                                            cosine_p5=q.cosine_p5), score)

    head_rows = []
    for name, (scores, params) in heads.items():
        for h, score in enumerate(scores):
            with mask_head(name, h) as masked:
                head_rows.append(row("head", name, h, params, judge(masked), round(float(score), 6)))
    block_rows = [row("block", layer, k, params, judge(without_block(k))) for k, (layer, params) in enumerate(blocks)]
    return EncoderScan(reference.accuracy, samples, tuple(head_rows), tuple(block_rows))
