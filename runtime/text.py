"""Text in, sentence embeddings out: tokenize, pad, mask, run, pool, normalize (the bundle's `text` section).

The tokenizer is the bundle's tokenizer.json, read by the `tokenizers` package (in the bundle's requirements
only when the bundle takes text). Pooling as sentence-transformers does it: `mean` averages the token states
where the attention mask is 1, `cls` takes the first token's; a model whose output is already one vector per
sentence is not pooled. `normalize` scales each embedding to length 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .model import SampleResult

ROLES = ("ids", "mask", "types")  # what each token input holds, by name (compiler/text.py names them)


def pool(states: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """[batch, tokens, width] token states -> [batch, width] sentence vectors ([batch, width] passes through)."""
    if states.ndim == 2:
        return states
    if how == "cls":
        return states[:, 0]
    weights = mask.astype(np.float32)[..., None]
    return (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class TextEncoder:
    """The bundle's tokenizer, bound to its sequence length and the model's token inputs."""

    def __init__(self, bundle_dir: Path, text: dict[str, Any]) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError("this bundle takes text: install its requirements (the `tokenizers` package)") from None
        self.text = text
        self.tokenizer = Tokenizer.from_file(str(bundle_dir / text["tokenizer"]))
        self.tokenizer.enable_truncation(text["seq_len"])
        self.tokenizer.enable_padding(length=text["seq_len"], pad_id=text["pad_id"], pad_token=text["pad_token"])

    def feeds(self, sentences: list[str], names: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """The model's token inputs in `names` order, and the attention mask."""
        encoded = self.tokenizer.encode_batch(sentences)
        arrays = {"ids": np.array([e.ids for e in encoded], np.int64),
                  "mask": np.array([e.attention_mask for e in encoded], np.int64),
                  "types": np.array([e.type_ids for e in encoded], np.int64)}
        return [arrays[self.text["inputs"][name]] for name in names], arrays["mask"]

    def embeddings(self, outputs: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        """The sentence embeddings of the model's outputs: the configured output, pooled and normalized."""
        pooled = pool(outputs[self.text.get("output", 0)].astype(np.float32), mask, self.text["pooling"])
        return normalized(pooled) if self.text["normalize"] else pooled


def bucket_lengths(mask: np.ndarray, buckets: list[int]) -> list[int]:
    """Each sentence's run length: the smallest bucket holding its tokens (padding is at the end), else the last."""
    return [next((b for b in sorted(buckets) if b >= n), max(buckets)) for n in mask.sum(axis=1).tolist()]


def text_samples(got: np.ndarray, golden: dict, feeds: list, atol: float, rtol: float) -> list[SampleResult]:
    """Each golden sentence: its token arrays exactly the recorded ones (else the tokenizer changed: |diff| inf),
    and its embedding within atol + rtol * |expected| of the recorded one."""
    same = np.all([np.all(f == golden[f"input_{k}"], axis=1) for k, f in enumerate(feeds)], axis=0)
    expected = golden["text_embedding"]
    return [SampleResult(i, bool(ok and np.all(d <= atol + rtol * np.abs(e))), float(d.max()) if ok else np.inf)
            for i, (d, e, ok) in enumerate(zip(np.abs(got - expected), expected, same, strict=True))]
