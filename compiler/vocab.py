"""Vocabulary pruning, the framework-neutral half: which token ids to keep, and the tokenizer.json that numbers
them 0..K-1 (compiler/vocab_stage.py rewrites the model's embedding rows to match).

The rule (issue 36): keep the special tokens, the alphabet of the corpus (the single-character pieces, word-initial
and continuing, of every character its normalized text holds: any word written in those characters is then
spelled in pieces rather than lost to [UNK]), every token the corpus produces under the source tokenizer, and,
with --vocab-size N, fill up to N with the other tokens in the vocabulary's own order (WordPiece vocabularies
list the alphabet first, then the pieces their trainer merged, most frequent first: the order is the frequency
rank a tokenizer.json carries). With N smaller than the specials plus the corpus's tokens, the corpus's most
frequent tokens win. Kept tokens keep their relative order, so [PAD] = 0 stays 0. The fill passes over placeholder
rows (`[unused0]`..: BERT's vocabulary opens with 994 of them, reserved, untrained, never produced from text), and
takes the pieces written in the corpus's own scripts first: a piece holding a letter of another script (BERT-uncased
lists ~1,400 single CJK, kana, Cyrillic, Arabic.. characters before its first word) comes only after every piece of
the corpus's scripts, so an English FAQ's budget buys English word pieces, not characters its users never type.

WordPiece only (BERT-class encoders): its greedy longest-prefix match gives every word the corpus holds the same
pieces under the kept vocabulary (a longer kept prefix would have been a longer prefix of the full one), so the
token states of a sentence made of corpus words are bit-identical; any other word is split into kept pieces or,
when it cannot be, is [UNK], the rule the original applies to a word outside its own vocabulary.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekiln.compiler.errors import DataError, RecipeError

PLACEHOLDER = re.compile(r"\[unused\d+\]")     # reserved WordPiece rows: the --vocab-size fill skips them
PROCESSOR_PAIRS = ("sep", "cls")  # BertProcessing / RobertaProcessing: [token, id] pairs


@dataclass(frozen=True)
class VocabChoice:
    """The kept token ids (the source's numbering, ascending), and what chose them."""

    kept: tuple[int, ...]
    rows_before: int      # the source tokenizer's ids (the embedding may have more rows: padding to a multiple)
    specials: int         # special tokens kept (always)
    alphabet: int         # single-character pieces of the corpus's characters kept (always)
    corpus_tokens: int    # distinct tokens the corpus produced
    filled: int           # kept to reach --vocab-size (0 without it)
    dropped_corpus: int   # distinct corpus tokens --vocab-size left out (0 without it)

    def new_ids(self) -> dict[int, int]:
        """Source id -> kept id."""
        return {old: new for new, old in enumerate(self.kept)}


def read_spec(path: str | Path) -> dict[str, Any]:
    """A tokenizer.json as JSON, refused in one line unless it is a WordPiece tokenizer."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read tokenizer {path}: {exc}", "pass the model's tokenizer.json") from None
    kind = (spec.get("model") or {}).get("type") if isinstance(spec, dict) else None
    if kind != "WordPiece":
        raise RecipeError(f"--vocab-from prunes WordPiece vocabularies (BERT-class encoders); {Path(path).name} is "
                          f"{kind or 'not a tokenizer.json'}", "leave out --vocab-from for this model")
    return spec


def vocab_rows(spec: dict[str, Any]) -> int:
    """How many ids the tokenizer hands out: its vocabulary and its added tokens."""
    ids = set(spec["model"]["vocab"].values()) | {t["id"] for t in spec.get("added_tokens") or []}
    return max(ids) + 1


def special_ids(spec: dict[str, Any]) -> set[int]:
    """The ids of the special tokens: added tokens marked special, the unknown token and the padding token."""
    vocab = spec["model"]["vocab"]
    found = {t["id"] for t in spec.get("added_tokens") or [] if t.get("special")}
    for name in (spec["model"].get("unk_token"), (spec.get("padding") or {}).get("pad_token")):
        if name in vocab:
            found.add(vocab[name])
    return found


@dataclass(frozen=True)
class Corpus:
    """What the rule reads of the corpus: each id's count under the source tokenizer, and its characters."""

    counts: Counter[int]
    characters: frozenset[str]


def read_corpus(tokenizer_path: str | Path, sentences: Sequence[str]) -> Corpus:
    """The corpus's token counts (no padding, no truncation) and the characters of its normalized text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    counts = Counter(i for encoding in tokenizer.encode_batch(list(sentences)) for i in encoding.ids)
    normalize = tokenizer.normalizer.normalize_str if tokenizer.normalizer else (lambda text: text)
    return Corpus(counts, frozenset("".join(normalize(s) for s in sentences)) - {" "})


def alphabet_ids(spec: dict[str, Any], characters: Iterable[str]) -> set[int]:
    """The single-character pieces of `characters`: word-initial `c` and continuing `##c`."""
    vocab, prefix = spec["model"]["vocab"], spec["model"].get("continuing_subword_prefix", "##")
    return {vocab[t] for c in characters for t in (c, prefix + c) if t in vocab}


def choose(spec: dict[str, Any], corpus: Corpus, vocab_size: int | None) -> VocabChoice:
    """The kept ids by the rule of the module docstring."""
    rows = vocab_rows(spec)
    specials = special_ids(spec)
    base = specials | alphabet_ids(spec, corpus.characters)
    tokens = [i for i, _ in corpus.counts.most_common() if i not in base]  # most frequent first
    if vocab_size is not None and vocab_size <= len(base):
        raise RecipeError(f"--vocab-size {vocab_size} leaves no room beside the {len(specials)} special tokens and "
                          f"the corpus's {len(base) - len(specials)} single characters", f"give more than {len(base)}")
    kept = base | set(tokens)
    dropped = filled = 0
    if vocab_size is not None and len(kept) > vocab_size:
        kept = base | set(tokens[: vocab_size - len(base)])
        dropped = len(tokens) - (vocab_size - len(base))
    elif vocab_size is not None:
        rest = fill_order(spec, kept, scripts(corpus.characters))[: vocab_size - len(kept)]
        kept |= set(rest)
        filled = len(rest)
    return VocabChoice(tuple(sorted(kept)), rows, len(specials), len(base) - len(specials),
                       len(set(corpus.counts) - specials), filled, dropped)


def words_outside(tokenizer_path: str | Path, sentences: Sequence[str], kept: Sequence[int]) -> list[str]:
    """The distinct words of `sentences` (as written, first seen first) that the source tokenizer spells with a
    token the kept vocabulary lacks: the words the cut spells in other pieces or as [UNK] (a word all of whose
    pieces are kept gets the same pieces, the module docstring's rule)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    keep, found = set(kept), dict[str, None]()
    for sentence, encoding in zip(sentences, tokenizer.encode_batch(list(sentences)), strict=True):
        spans: dict[int, list[tuple[int, int]]] = {}
        for word, offsets in zip(encoding.word_ids, encoding.offsets, strict=True):
            if word is not None:
                spans.setdefault(word, []).append(offsets)
        lost = {w for w, i in zip(encoding.word_ids, encoding.ids, strict=True) if w is not None and i not in keep}
        for word in sorted(lost):
            found[sentence[min(a for a, _ in spans[word]): max(b for _, b in spans[word])]] = None
    return list(found)


def script(character: str) -> str | None:
    """The script of a letter or mark, by its Unicode name's first word (LATIN, CYRILLIC, CJK, HIRAGANA, ..); None
    for digits, punctuation and symbols, which every script shares. A letter named otherwise (MODIFIER LETTER ..,
    the ordinal indicators) is its own script: rare in any one language's text, passed over like a foreign one."""
    if unicodedata.category(character)[0] not in "LM":
        return None
    return unicodedata.name(character, "UNNAMED").split(" ", 1)[0]


def scripts(characters: Iterable[str]) -> frozenset[str]:
    """The scripts the characters are written in (digits, punctuation and symbols have none)."""
    return frozenset(s for c in characters if (s := script(c)) is not None)


def fill_order(spec: dict[str, Any], kept: set[int], own: frozenset[str]) -> list[int]:
    """The ids the --vocab-size fill takes, in order: those not kept and not placeholders, in the vocabulary's
    order, the pieces whose letters are all of the `own` scripts first, then the others."""
    names = {i: token for token, i in spec["model"]["vocab"].items()}
    free = [i for i in range(vocab_rows(spec)) if i not in kept and not PLACEHOLDER.fullmatch(names.get(i, ""))]
    foreign = {i for i in free if not scripts(names.get(i, "")) <= own}
    return [i for i in free if i not in foreign] + [i for i in free if i in foreign]


def coverage(counts: Counter[int], kept: Sequence[int]) -> float:
    """The share of the token occurrences in `counts` whose id is kept."""
    total = sum(counts.values())
    keep = set(kept)
    return sum(n for i, n in counts.items() if i in keep) / total if total else 1.0


def remap(spec: dict[str, Any], choice: VocabChoice) -> dict[str, Any]:
    """The tokenizer.json of the kept vocabulary (a new dict): ids renumbered in the vocabulary, the added tokens,
    the post-processor's special tokens and the padding id; every other rule (normalizer, pre-tokenizer, [UNK],
    truncation) unchanged."""
    new_ids = choice.new_ids()
    out = copy.deepcopy(spec)
    out["model"]["vocab"] = {t: new_ids[i] for t, i in spec["model"]["vocab"].items() if i in new_ids}
    out["added_tokens"] = [{**t, "id": new_ids[t["id"]]} for t in spec.get("added_tokens") or []
                           if t["id"] in new_ids]
    if out.get("padding"):
        out["padding"]["pad_id"] = new_ids[out["padding"]["pad_id"]]
    if out.get("post_processor"):
        _remap_processor(out["post_processor"], new_ids)
    return out


def _remap_processor(processor: dict[str, Any], new_ids: dict[int, int]) -> None:
    """The post-processor's special-token ids, renumbered in place (on the copy `remap` made)."""
    for inner in processor.get("processors") or []:  # a Sequence of processors
        _remap_processor(inner, new_ids)
    for special in (processor.get("special_tokens") or {}).values():  # TemplateProcessing
        special["ids"] = [new_ids[i] for i in special["ids"]]
    for key in PROCESSOR_PAIRS:
        if isinstance(processor.get(key), list):
            processor[key] = [processor[key][0], new_ids[processor[key][1]]]
