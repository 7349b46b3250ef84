"""Vocabulary pruning's choice and tokenizer remap (compiler/vocab.py), on the sample's WordPiece tokenizer."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from edgekiln.compiler import vocab, vocab_stage
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.manifest_schema import Vocabulary
from edgekiln.compiler.recipe import Recipe
from tests.conftest import SAMPLES

TOKENIZER = SAMPLES / "intent_tokenizer.json"
CORPUS = ["turn on the lights in the kitchen", "set a timer for ten minutes", "play some jazz please"]


@pytest.fixture(scope="module")
def spec() -> dict:
    return vocab.read_spec(TOKENIZER)


@pytest.fixture(scope="module")
def corpus() -> vocab.Corpus:
    return vocab.read_corpus(TOKENIZER, CORPUS)


def _pruned(spec: dict, choice: vocab.VocabChoice):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(vocab.remap(spec, choice)))


def _original():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TOKENIZER))


def test_the_choice_keeps_the_specials_the_corpus_alphabet_and_every_corpus_token(spec, corpus):
    choice = vocab.choose(spec, corpus, None)
    kept = set(choice.kept)
    assert {0, 1, 2, 3} <= kept and set(corpus.counts) <= kept  # [PAD] [UNK] [CLS] [SEP] and the corpus's ids
    assert vocab.alphabet_ids(spec, "kitchen") <= kept and spec["model"]["vocab"]["x"] not in kept  # no 'x' in it
    assert choice.rows_before == 400 and len(kept) < 400 and list(choice.kept) == sorted(kept)
    assert vocab.coverage(corpus.counts, choice.kept) == 1.0


def test_vocab_size_fills_in_the_vocabulary_order_or_cuts_to_the_most_frequent(spec, corpus):
    full = vocab.choose(spec, corpus, None)
    filled = vocab.choose(spec, corpus, len(full.kept) + 10)
    assert len(filled.kept) == len(full.kept) + 10 and filled.filled == 10 and set(full.kept) < set(filled.kept)
    first_left_out = min(set(range(400)) - set(full.kept))
    assert first_left_out in filled.kept  # filled from the lowest ids the corpus left out
    base = len(vocab.special_ids(spec) | vocab.alphabet_ids(spec, corpus.characters))
    cut = vocab.choose(spec, corpus, base + 2)
    assert len(cut.kept) == base + 2 and cut.dropped_corpus > 0
    most_frequent = next(i for i, _ in corpus.counts.most_common() if i not in vocab.special_ids(spec)
                         and i not in vocab.alphabet_ids(spec, corpus.characters))
    assert most_frequent in cut.kept and vocab.coverage(corpus.counts, cut.kept) < 1.0
    with pytest.raises(RecipeError, match="leaves no room"):
        vocab.choose(spec, corpus, base)


def test_sentences_of_corpus_words_get_the_same_pieces_and_bit_identical_embeddings(spec, corpus):
    choice = vocab.choose(spec, corpus, None)
    pruned, original = _pruned(spec, choice), _original()
    table = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)  # the source's word embedding
    cut = table[list(choice.kept)]  # what compiler/graph/vocab_rows.py keeps
    for sentence in [*CORPUS, "play the jazz in the kitchen please", "turn on a timer"]:
        before, after = original.encode(sentence), pruned.encode(sentence)
        assert before.tokens == after.tokens and before.attention_mask == after.attention_mask
        assert np.array_equal(table[before.ids], cut[after.ids])  # the token states enter the encoder unchanged
    new_ids = choice.new_ids()
    assert [new_ids[i] for i in original.encode(CORPUS[0]).ids] == pruned.encode(CORPUS[0]).ids


def test_a_word_outside_the_kept_vocabulary_is_one_unk_as_the_original_makes_of_a_word_outside_its_own(spec, corpus):
    pruned, original = _pruned(spec, vocab.choose(spec, corpus, None)), _original()
    assert original.encode("turn on €€").tokens[1:4] == ["turn", "on", "[UNK]"]  # outside the original's vocabulary
    assert pruned.encode("turn on xylophone").tokens[1:4] == ["turn", "on", "[UNK]"]  # 'x' and 'y' were cut
    assert "[UNK]" not in original.encode("turn on xylophone").tokens  # the original spells it in pieces
    assert pruned.encode("turn on €€").tokens[1:4] == ["turn", "on", "[UNK]"]
    assert pruned.token_to_id("[UNK]") == 1 and pruned.encode("x").ids[1] == 1


def test_the_remapped_tokenizer_pads_and_frames_with_its_own_ids(spec, corpus):
    choice = vocab.choose(spec, corpus, None)
    remapped = vocab.remap(spec, choice)
    pruned = _pruned(spec, choice)
    encoding = pruned.encode("set a timer")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[4] == "[SEP]" and encoding.tokens[-1] == "[PAD]"
    assert len(encoding.ids) == 24 and max(encoding.ids) < len(choice.kept)
    assert remapped["padding"]["pad_id"] == 0 and len(remapped["model"]["vocab"]) == len(choice.kept)
    assert remapped["post_processor"]["special_tokens"]["[SEP]"]["ids"] == [pruned.token_to_id("[SEP]")]
    assert spec["model"]["vocab"]["kitchen"] != remapped["model"]["vocab"]["kitchen"]  # renumbered ...
    assert len(spec["model"]["vocab"]) == 400  # ... in a copy: the source's stays as it was


def test_a_tokenizer_that_is_not_wordpiece_is_refused_in_one_line(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "bpe.json"
    Tokenizer(models.BPE(unk_token="[UNK]")).save(str(path))
    with pytest.raises(RecipeError, match="prunes WordPiece vocabularies .* bpe.json is BPE"):
        vocab.read_spec(path)


def test_vocab_size_fill_passes_over_bert_s_unused_placeholders(corpus):
    """BERT's vocabulary opens with [unused0].. rows no text produces: filling in its order takes real pieces."""
    spec = vocab.read_spec(TOKENIZER)
    names = {i: t for t, i in spec["model"]["vocab"].items()}
    full = vocab.choose(spec, corpus, None)
    free = sorted(set(range(400)) - set(full.kept))
    spec["model"]["vocab"] = {(f"[unused{i}]" if i in free[:3] else t): i for i, t in names.items()}
    filled = vocab.choose(spec, corpus, len(full.kept) + 2)
    assert set(filled.kept) - set(full.kept) == set(free[3:5]) and filled.filled == 2


def _bert_like_spec() -> dict:
    """A WordPiece vocabulary laid out as BERT's: specials, single characters of many scripts (here before the
    Latin ones, as BERT lists CJK and kana beside them), then word pieces, most frequent first."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", "7",
              "中", "国", "の", "ж", "##ж", "ب", "ʰ", "a", "b", "c", "##a", "##b", "##c",
              "the", "cab", "##ab", "about", "мир", "abc"]
    return {"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {t: i for i, t in enumerate(tokens)}},
            "added_tokens": [{"id": i, "content": t, "special": True} for i, t in enumerate(tokens[:5])]}


def test_vocab_size_fill_takes_the_corpus_s_own_script_before_single_characters_of_other_scripts():
    """A Latin corpus's budget buys Latin pieces (and shared digits, punctuation) before the CJK, kana, Cyrillic,
    Arabic and modifier letters listed ahead of them; those come only once the Latin pieces run out."""
    spec = _bert_like_spec()
    vocab_ids, names = spec["model"]["vocab"], {i: t for t, i in spec["model"]["vocab"].items()}
    latin = vocab.Corpus(Counter({vocab_ids["a"]: 2, vocab_ids["##b"]: 1}), frozenset("ab"))
    base = vocab.choose(spec, latin, None)
    own_pieces = ["!", "7", "c", "##c", "the", "cab", "##ab", "about", "abc"]  # in vocabulary order
    filled = vocab.choose(spec, latin, len(base.kept) + len(own_pieces))
    added = [names[i] for i in sorted(set(filled.kept) - set(base.kept))]
    assert added == own_pieces and filled.filled == len(own_pieces)
    everything = vocab.choose(spec, latin, len(base.kept) + len(own_pieces) + 2)
    assert {names[i] for i in set(everything.kept) - set(filled.kept)} == {"中", "国"}  # then the others, in order
    cyrillic = vocab.Corpus(Counter({vocab_ids["ж"]: 1}), frozenset("ж"))
    assert [names[i] for i in vocab.fill_order(spec, set(vocab.choose(spec, cyrillic, None).kept),
                                                vocab.scripts("ж"))][:3] == ["!", "7", "мир"]


def test_script_reads_unicode_names_and_leaves_digits_and_punctuation_to_every_script():
    assert [vocab.script(c) for c in "aé中のжب!7€"] == ["LATIN", "LATIN", "CJK", "HIRAGANA", "CYRILLIC", "ARABIC",
                                                          None, None, None]
    assert vocab.scripts("##ab!") == {"LATIN"} and vocab.scripts("##") == frozenset()


def test_words_outside_names_the_unseen_words_the_cut_spells_otherwise_and_only_those(spec, corpus):
    kept = vocab.choose(spec, corpus, None).kept
    unseen = ["turn on the lights", "Turn off the radio in the garage", "set the radio"]
    outside = vocab.words_outside(TOKENIZER, unseen, kept)
    inside = set(" ".join(CORPUS).split())
    assert outside and len(outside) == len(set(outside)) and not set(outside) & inside
    assert outside == [w for w in dict.fromkeys(" ".join(unseen[1:]).split()) if w.lower() not in inside]
    assert vocab.words_outside(TOKENIZER, unseen, range(400)) == []  # the whole vocabulary: nothing outside


def _block(mean: float, p5: float, words: list[str]) -> Vocabulary:
    """The MiniLM default build's vocabulary section (bench/transformer_ladder.py, 300-sentence corpus)."""
    return {"corpus": "calibration sentences (--text)", "corpus_sentences": 300, "rows_before": 30522,
            "rows_after": 209, "special_tokens": 5, "alphabet_tokens": 52, "corpus_tokens": 154,
            "filled_to_vocab_size": 0, "corpus_tokens_dropped": 0, "embedding_bytes_before": 46881792,
            "embedding_bytes_after": 321024, "params_before": 17241998, "params_after": 5601806,
            "coverage_corpus": 1.0, "cosine_corpus": {"mean": 1.0, "p5": 1.0, "sentences": 300},
            "tokenizer": "tokenizer.json", "coverage_unseen": 0.96,
            "cosine_unseen": {"mean": mean, "p5": p5, "sentences": 200},
            "words_outside": words, "words_outside_count": len(words)}


def test_a_cut_that_alone_misses_the_cosine_floor_is_a_warning_naming_the_words_and_the_remedies():
    words = ["put", "switch", "tell", "london", "cape", "town", "sydney"]
    said = vocab_stage.warning(_block(0.935708, 0.81703, words), Recipe(source="m.onnx"))
    assert said is not None
    assert "pruned to the 209 tokens of calibration sentences (--text) (300 sentences)" in said
    assert "7 word(s)" in said and "'put', 'switch', 'tell', 'london', 'cape', 'town', 'sydney')" in said
    assert "cosine 0.936 (p5 0.817)" in said and "floor (cosine mean >= 0.99)" in said
    assert "--vocab-from CORPUS.txt" in said and "--vocab-size N" in said
    p5_floor = vocab_stage.warning(_block(0.995, 0.9, words), Recipe(source="m.onnx", min_cosine_p5=0.95))
    assert p5_floor is not None and "p5 >= 0.95" in p5_floor


def test_no_warning_when_the_cut_meets_the_floor_or_no_unseen_word_fell_outside():
    recipe = Recipe(source="m.onnx", min_cosine=0.98, min_cosine_p5=0.95)
    assert vocab_stage.warning(_block(0.999, 0.99, ["switch"]), recipe) is None
    assert vocab_stage.warning(_block(0.9, 0.8, []), recipe) is None
