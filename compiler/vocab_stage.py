"""The vocabulary stage of a build (--vocab-from CORPUS.txt | auto): a sentence encoder keeps only the word-
embedding rows its users' text reaches, and ships the tokenizer that numbers them.

It runs after the data stage and before pruning. Steps: choose the kept tokens (compiler/vocab.py), cut the
embedding rows (compiler/graph/vocab_rows.py), write the renumbered tokenizer.json, re-read the build's text data
with it, and measure what the cut cost: the cosine of the pooled sentence embedding to the source model's (each
side with its own tokenizer) on the corpus and on the evaluation sentences outside it. Every later stage works on
the cut model and the re-read data; the build's Reference still runs the source, on the same sentences in the
source's ids (evaluate/reference.py twins), so every fidelity and accuracy figure includes the cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler import Progress, vocab
from edgekiln.compiler.data import Datasets, load_datasets
from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.criterion import DEFAULT_COSINE
from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.evaluate.reference import Reference
from edgekiln.compiler.manifest_schema import Vocabulary, VocabularyCosine
from edgekiln.compiler.model_inputs import Dataset, InputSpec
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.text import TEXT_SUFFIXES, read_sentences, sequence_length, token_roles, tokenizer_for
from edgekiln.runtime.text import pool

if TYPE_CHECKING:
    from edgekiln.compiler.graph.keras_graph import KerasGraph
    from edgekiln.compiler.graph.onnx_graph import OnnxGraph

TOKENIZER_FILE = "tokenizer.json"  # the renumbered tokenizer, in the work directory and in the bundle
WORDS_LISTED = 50                  # the manifest lists at most this many words outside the kept vocabulary
WORDS_SAID = 8                     # and the warning names at most this many


@dataclass(frozen=True)
class VocabPruned:
    """The cut working graph, the build's data re-read with its tokenizer, the Reference that judges it against
    the source, and the manifest's vocabulary section."""

    graph: KerasGraph | OnnxGraph
    data: Datasets
    tokenizer: Path
    reference: Reference
    block: Vocabulary


def prune(graph: KerasGraph | OnnxGraph, recipe: Recipe, data: Datasets, workdir: Path, progress: Progress
          ) -> VocabPruned | None:
    """Cut the vocabulary as --vocab-from says; None without it."""
    if recipe.vocab_from is None:
        return None
    assert recipe.tokenizer is not None, "the recipe refuses --vocab-from without --tokenizer"
    corpus_path = _corpus_path(recipe)
    progress(f"Keeping the vocabulary of {corpus_path.name}")
    spec = vocab.read_spec(recipe.tokenizer)
    sentences, _ = read_sentences(corpus_path, "vocabulary corpus")
    corpus = vocab.read_corpus(recipe.tokenizer, sentences)
    choice = vocab.choose(spec, corpus, recipe.vocab_size)
    cut, width, rows = _cut(graph, choice, workdir)
    tokenizer = workdir / TOKENIZER_FILE
    tokenizer.write_text(json.dumps(vocab.remap(spec, choice), ensure_ascii=False), encoding="utf-8")
    # No cross-fitting on the re-read data: its fold models' datasets would have no source-vocabulary twin (the
    # Reference pairs datasets by identity); fidelity is judged on --eval when given, and judged_by says which.
    cut_data = load_datasets(recipe.replace(tokenizer=str(tokenizer), holdout_samples=0), cut.inputs)
    reference = Reference(graph, _twins(cut_data, data), subject=cut)
    unseen = _unseen(recipe, sentences)
    block: Vocabulary = {
        "corpus": "calibration sentences (--text)" if recipe.vocab_from == "auto" else corpus_path.name,
        "corpus_sentences": len(sentences), "rows_before": rows, "rows_after": len(choice.kept),
        "special_tokens": choice.specials, "alphabet_tokens": choice.alphabet, "corpus_tokens": choice.corpus_tokens,
        "filled_to_vocab_size": choice.filled, "corpus_tokens_dropped": choice.dropped_corpus,
        "embedding_bytes_before": rows * width * 4, "embedding_bytes_after": len(choice.kept) * width * 4,
        "params_before": graph.params, "params_after": cut.params,
        "coverage_corpus": round(vocab.coverage(corpus.counts, choice.kept), 6),
        "cosine_corpus": _fidelity(graph, cut, recipe, sentences, tokenizer),
        "tokenizer": TOKENIZER_FILE}
    if unseen:
        counts = vocab.read_corpus(recipe.tokenizer, unseen).counts
        block["coverage_unseen"] = round(vocab.coverage(counts, choice.kept), 6)
        block["cosine_unseen"] = _fidelity(graph, cut, recipe, unseen, tokenizer)
        outside = vocab.words_outside(recipe.tokenizer, unseen, choice.kept)
        block["words_outside"], block["words_outside_count"] = outside[:WORDS_LISTED], len(outside)
    return VocabPruned(cut, cut_data, tokenizer, reference, block)


def warning(block: Vocabulary, recipe: Recipe) -> str | None:
    """What the user must read when the cut alone misses the cosine floor on the evaluation sentences outside the
    corpus: every candidate is judged against the unpruned source, so no candidate can meet it, and why."""
    unseen, words = block.get("cosine_unseen"), block.get("words_outside") or []
    floor, floor_p5 = recipe.min_cosine or DEFAULT_COSINE, recipe.min_cosine_p5
    if unseen is None or not words or (unseen["mean"] >= floor and (floor_p5 is None or unseen["p5"] >= floor_p5)):
        return None
    count = block.get("words_outside_count", len(words))
    named = ", ".join(f"'{w}'" for w in words[:WORDS_SAID]) + (", .." if count > WORDS_SAID else "")
    floors = f"cosine mean >= {floor:g}" + (f", p5 >= {floor_p5:g}" if floor_p5 is not None else "")
    return (f"the vocabulary was pruned to the {block['rows_after']} tokens of {block['corpus']} "
            f"({block['corpus_sentences']} sentences), and {count} word(s) of the evaluation sentences fall outside "
            f"it ({named}): spelled in other pieces or [UNK], they alone move the sentence embedding to cosine "
            f"{unseen['mean']:.3f} (p5 {unseen['p5']:.3f}) of the unpruned source's on the {unseen['sentences']} "
            f"evaluation sentences outside the corpus, below the floor ({floors}) every candidate is judged by "
            "against that source; pass a corpus that covers the text the device will see (--vocab-from "
            "CORPUS.txt), or keep more of the vocabulary with --vocab-size N")


def _corpus_path(recipe: Recipe) -> Path:
    """The corpus file: --vocab-from's, or with auto the calibration sentences; the build's data must be text."""
    for role, path in (("calibration", recipe.calib), ("evaluation", recipe.eval)):
        if path and Path(path).suffix not in TEXT_SUFFIXES:
            raise RecipeError(f"--vocab-from renumbers the tokens, so the {role} data must be sentences (.txt) to "
                              f"tokenize again; {Path(path).name} is not", "pass --text / --eval as .txt files")
    if recipe.vocab_from != "auto":
        return Path(str(recipe.vocab_from))
    if not recipe.calib:
        raise RecipeError("--vocab-from auto takes the --text sentences as the corpus, and there are none",
                          "pass --text SENTENCES.txt, or --vocab-from CORPUS.txt")
    return Path(recipe.calib)


def _cut(graph: KerasGraph | OnnxGraph, choice: vocab.VocabChoice, workdir: Path
         ) -> tuple[KerasGraph | OnnxGraph, int, int]:
    """The working graph with the kept embedding rows; its width and the rows it had."""
    from edgekiln.compiler.graph import keras_graph, onnx_graph, vocab_rows

    if isinstance(graph, onnx_graph.OnnxGraph):
        ids = _ids_input(graph.inputs)
        model, width, rows = vocab_rows.onnx_cut(graph.model, choice.rows_before, ids, choice.kept)
        path = workdir / "vocabulary.onnx"
        path.write_bytes(model.SerializeToString())
        return (onnx_graph.OnnxGraph(graph.source_format, model, path, onnx_graph.input_specs(model),
                                     list(graph.output_names), onnx_graph.param_count(model),
                                     fixed_inputs=graph.fixed_inputs), width, rows)
    if graph.keras_model is None:
        raise RecipeError("--vocab-from needs a Keras model (.keras or .h5) or an ONNX encoder: a SavedModel cannot "
                          "be rebuilt", "load it in Keras, save it as .keras, and build that")
    model, width, rows = vocab_rows.keras_cut(graph.keras_model, choice.rows_before, choice.kept)
    exported = keras_graph.from_model(model, workdir / "vocabulary_saved_model", graph.source_format,
                                      "the vocabulary-pruned model")
    return exported, width, rows


def _ids_input(specs: list[InputSpec]) -> str:
    roles = token_roles(specs, "calibration", Path("--vocab-from"))
    return next(name for name, role in roles.items() if role == "ids")


def _twins(cut: Datasets, source: Datasets) -> list[tuple[Dataset, Dataset]]:
    """Each dataset of the re-read data beside the source tokenizer's one (same files, same split)."""
    pairs = [(cut.samples, source.samples), (cut.evaluation, source.evaluation), (cut.calib, source.calib),
             (cut.golden_set, source.golden_set), (cut.without_holdout, source.calib)]
    if cut.calib is not None and source.calib is not None:
        pairs.append((cut.tuning_set, source.tuning_set))
    fidelity = source.evaluation if cut.fidelity_set is cut.evaluation else source.samples
    pairs.append((cut.fidelity_set, fidelity))
    return [(mine, theirs) for mine, theirs in pairs if mine is not None and theirs is not None]


def _unseen(recipe: Recipe, corpus: list[str]) -> list[str]:
    """The evaluation sentences that are not in the corpus: the fair test of a cut vocabulary."""
    if not recipe.eval:
        return []
    inside = set(corpus)
    return [s for s in read_sentences(Path(recipe.eval), "evaluation")[0] if s not in inside]


def _fidelity(source: KerasGraph | OnnxGraph, cut: KerasGraph | OnnxGraph, recipe: Recipe, sentences: list[str],
              tokenizer: Path) -> VocabularyCosine:
    """The cosine of the cut model's pooled sentence embedding to the source's (each side tokenized by its own
    tokenizer); the model's first float output, mean-pooled over the attention mask when it holds token states."""
    assert recipe.tokenizer is not None, "the recipe refuses --vocab-from without --tokenizer"
    figures = cosine(_pooled(source, recipe.tokenizer, sentences, recipe.seq_len),
                     _pooled(cut, str(tokenizer), sentences, recipe.seq_len))
    return {"mean": figures["cosine_mean"], "p5": figures["cosine_p5"], "sentences": len(sentences)}


def _pooled(graph: KerasGraph | OnnxGraph, tokenizer: str, sentences: list[str], seq_len: int | None) -> np.ndarray:
    from edgekiln.compiler.data import in_model_types

    where = Path("--vocab-from")
    length = sequence_length(graph.inputs, seq_len, "vocabulary corpus", where)
    encoded = tokenizer_for(tokenizer, length).encode_batch(sentences)
    arrays = {"ids": np.array([e.ids for e in encoded], np.int64),
              "mask": np.array([e.attention_mask for e in encoded], np.int64),
              "types": np.array([e.type_ids for e in encoded], np.int64)}
    roles = token_roles(graph.inputs, "vocabulary corpus", where)
    feed = in_model_types(Dataset({n: arrays[r] for n, r in roles.items()}, None, "--vocab-from"), graph.inputs)
    output = next(o for o in graph.run(feed.inputs) if o.dtype.kind == "f")
    return pool(output.astype(np.float32), arrays["mask"], "mean")
