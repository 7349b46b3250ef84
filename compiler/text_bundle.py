"""A bundle that takes text (a build from sentences with --tokenizer): the manifest's `text` section, which the
runtime reads to tokenize, pad, mask, run, pool and normalize (runtime/text.py), and the tokenizer it ships.

Pooling and normalization are what the source model's users apply: read from the sentence-transformers files
beside the model when present (`1_Pooling/config.json`: CLS or mean tokens; `modules.json`: a Normalize module),
else mean pooling over the attention mask, normalized (sentence-transformers' default for its encoders). A model
whose output is already one vector per sentence is not pooled (runtime/text.pool).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekiln.compiler.manifest_schema import TextSection
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.text import TEXT_SUFFIXES, pad_id, read_sentences, sequence_length, token_roles, tokenizer_for

TOKENIZER_FILE = "tokenizer.json"  # in the bundle
TOKENIZERS_PIN = "tokenizers==0.23.3"  # the bundle's requirement when it takes text (abi3 wheels, glibc 2.17)


def section(recipe: Recipe, tokenizer: str, specs: list[InputSpec], golden_samples: int) -> TextSection | None:
    """The manifest's text section for a build from sentences; None for a build from token arrays."""
    corpus = next((p for p in (recipe.eval, recipe.calib) if p and Path(p).suffix in TEXT_SUFFIXES), None)
    if corpus is None:
        return None
    where = Path(corpus)
    length = sequence_length(specs, recipe.seq_len, "golden", where)
    padding = pad_id(tokenizer_for(tokenizer, length))
    pooling, normalize = pooling_of(Path(recipe.source))
    sentences = read_sentences(where, "golden")[0][:golden_samples]
    return {"tokenizer": TOKENIZER_FILE, "seq_len": length, "pad_id": padding,
            "pad_token": tokenizer_for(tokenizer, length).id_to_token(padding) or "[PAD]",
            "inputs": token_roles(specs, "golden", where), "output": 0, "pooling": pooling, "normalize": normalize,
            "pooling_from": _pooling_source(Path(recipe.source)), "golden_sentences": sentences}


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
