"""A bundle that takes text (a build from sentences with --tokenizer): the manifest's `text` section, which the
runtime reads to tokenize, pad, mask, run, pool and normalize (runtime/text.py), and the tokenizer it ships.

Pooling and normalization are what the source model's users apply: read from the sentence-transformers files
beside the model when present (`1_Pooling/config.json`: CLS or mean tokens; `modules.json`: a Normalize module),
else mean pooling over the attention mask, normalized (sentence-transformers' default for its encoders). A model
whose output is already one vector per sentence is not pooled (runtime/text.pool).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.compiler.manifest_schema import LengthLatency, TextSection
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.text import TEXT_SUFFIXES, pad_id, read_sentences, sequence_length, token_roles, tokenizer_for

TOKENIZER_FILE = "tokenizer.json"  # in the bundle
TOKENIZERS_PIN = "tokenizers==0.23.3"  # the bundle's requirement when it takes text (abi3 wheels, glibc 2.17)


def section(recipe: Recipe, tokenizer: str, specs: list[InputSpec], golden_samples: int,
            shipped: Shipped | None = None) -> TextSection | None:
    """The manifest's text section for a build from sentences; None for a build from token arrays. A shipped model
    that takes any sequence length gets buckets (each sentence runs at its own, rounded up: runtime/text.py) and
    its host latency at the evaluation sentences' median and longest lengths."""
    corpus = next((p for p in (recipe.eval, recipe.calib) if p and Path(p).suffix in TEXT_SUFFIXES), None)
    if corpus is None:
        return None
    where = Path(corpus)
    length = sequence_length(specs, recipe.seq_len, "golden", where)
    padding = pad_id(tokenizer_for(tokenizer, length))
    pooling, normalize = pooling_of(Path(recipe.source))
    sentences = read_sentences(where, "golden")[0][:golden_samples]
    text: TextSection = {"tokenizer": TOKENIZER_FILE, "seq_len": length, "pad_id": padding,
                         "pad_token": tokenizer_for(tokenizer, length).id_to_token(padding) or "[PAD]",
                         "inputs": token_roles(specs, "golden", where), "output": 0, "pooling": pooling,
                         "normalize": normalize, "pooling_from": _pooling_source(Path(recipe.source)),
                         "golden_sentences": sentences}
    if shipped is not None and shipped.open_sequence():
        text["buckets"] = buckets(length)
        text["latency_by_length"] = shipped.latency_by_length(text, tokenizer, read_sentences(where, "golden")[0])
    return text


@dataclass(frozen=True)
class Pooler:
    """A text build's sentence embeddings from the model's outputs and token arrays, as the bundle's runtime makes
    them (runtime/text.py): what its golden check compares, so what its golden tolerance is measured on."""

    pooling: str
    normalize: bool
    pad_id: int
    roles: dict[str, str]  # input name -> ids / mask / types

    def embeddings(self, outputs: list[np.ndarray], inputs: dict[str, np.ndarray]) -> np.ndarray:
        """[samples, width]: output 0 pooled over the attention mask (the ids that are not padding without a mask
        input, as the tokenizer's mask is), normalized where the source's users normalize."""
        from edgekiln.runtime.text import normalized, pool

        ids = next(inputs[name] for name, role in self.roles.items() if role == "ids")
        mask = next((inputs[name] for name, role in self.roles.items() if role == "mask"), ids != self.pad_id)
        pooled = pool(outputs[0].astype(np.float32), mask, self.pooling)
        return normalized(pooled) if self.normalize else pooled


def pooler(recipe: Recipe, tokenizer: str | None, specs: list[InputSpec]) -> Pooler | None:
    """How a build from sentences pools (None for a build from token arrays: its golden check is per output)."""
    corpus = next((p for p in (recipe.eval, recipe.calib) if p and Path(p).suffix in TEXT_SUFFIXES), None)
    if corpus is None or tokenizer is None:
        return None
    length = sequence_length(specs, recipe.seq_len, "golden", Path(corpus))
    pooling, normalize = pooling_of(Path(recipe.source))
    return Pooler(pooling, normalize, pad_id(tokenizer_for(tokenizer, length)), token_roles(specs, "golden",
                                                                                           Path(corpus)))


def buckets(longest: int) -> list[int]:
    """The lengths a sentence runs at: powers of two from 8 below the model's length, then that length."""
    return [b for b in (8, 16, 32, 64, 128, 256, 512) if b < longest] + [longest]


@dataclass(frozen=True)
class Shipped:
    """The shipped model, as the bundle runtime opens it (host timing of its lengths)."""

    format: str
    model: bytes
    threads: int | None
    runs: int

    def open_sequence(self) -> bool:
        """Whether it takes any sequence length (axis 1 of its inputs left open, -1)."""
        from edgekiln.runtime import Model

        return all(len(i.shape) > 1 and i.shape[1] == -1 for i in Model(self.format, self.model, 1).inputs)

    def latency_by_length(self, text: TextSection, tokenizer: str, sentences: list[str]) -> LengthLatency:
        """Host p50 at the bucket of the sentences' median and longest token counts, and padded to the maximum."""
        from edgekiln.runtime import Model
        from edgekiln.runtime.text import bucket_lengths

        encoded = tokenizer_for(tokenizer, text["seq_len"]).encode_batch(sentences)
        counts = np.array([sum(e.attention_mask) for e in encoded])
        median, longest = int(np.median(counts)), int(counts.max())
        model = Model(self.format, self.model, self.threads)
        roles = list(text["inputs"].values())

        def p50(tokens: int) -> float:
            feeds = [np.full((1, tokens), 0 if role == "types" else 1, np.dtype(info.dtype))
                     for role, info in zip(roles, model.inputs, strict=True)]
            return float(model.benchmark(feeds, runs=self.runs, warmup=5)["p50_ms"])

        at = bucket_lengths(np.arange(text["seq_len"])[None] < np.array([[median], [longest]]), text["buckets"])
        return {"median_tokens": median, "median_bucket": at[0], "median_p50_ms": p50(at[0]),
                "longest_tokens": longest, "longest_bucket": at[1], "longest_p50_ms": p50(at[1]),
                "padded_p50_ms": p50(text["seq_len"]), "sentences": len(sentences),
                "how": f"host p50 of {self.runs} runs, batch 1, {self.threads or 'default'} thread(s), tokens counted "
                       "with [CLS] / [SEP]"}


def pooling_of(source: Path) -> tuple[str, bool]:
    """(pooling, normalize) from the sentence-transformers files beside the model, else ("mean", True)."""
    folder = source if source.is_dir() else source.parent
    found = _json(folder / "1_Pooling" / "config.json")
    pooling = found if isinstance(found, dict) else {}
    modules = _json(folder / "modules.json")
    how = "cls" if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens") else "mean"
    normalize = any("Normalize" in str(m.get("type", "")) for m in modules if isinstance(m, dict)) \
        if isinstance(modules, list) else True
    return how, normalize


def _pooling_source(source: Path) -> str:
    folder = source if source.is_dir() else source.parent
    found = (folder / "1_Pooling" / "config.json").is_file()
    return "sentence-transformers 1_Pooling/config.json" if found else "default: mean over the mask, normalized"


def _json(path: Path) -> dict | list:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict | list) else {}
