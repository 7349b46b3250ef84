"""Sentences + tokenizer.json -> token arrays for the model's inputs (compiler/text.py), through load_data."""

from __future__ import annotations

import pytest

from edgekiln.compiler.data import load_data
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.model_inputs import InputSpec

SENTENCES = ["turn on the lights", "play some jazz in the kitchen", "what is the weather tomorrow"]


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def _ids(length: int = 8, name: str = "input_ids", dtype: str = "int32") -> InputSpec:
    return InputSpec(name, (-1, length), dtype)


def test_sentences_become_padded_ids_mask_and_types_by_input_name(tokenizer_json, tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(SENTENCES) + "\n\n")  # blank lines are not sentences
    specs = [InputSpec("input_ids", (-1, -1), "int64"), InputSpec("attention_mask", (-1, -1), "int64"),
             InputSpec("token_type_ids", (-1, -1), "int64")]
    data = load_data(path, specs, role="calibration", tokenizer=tokenizer_json, seq_len=10)
    ids, mask, types = (data.inputs[s.name] for s in specs)
    assert ids.shape == mask.shape == types.shape == (3, 10) and data.labels is None
    assert ids[0, 0] == 2 and ids[0, 5] == 3 and list(ids[0, 6:]) == [0] * 4  # [CLS] 4 words [SEP], then [PAD]
    assert list(mask[0]) == [1] * 6 + [0] * 4 and not types.any()


def test_labelled_lines_give_labels_and_the_models_length_is_used(tokenizer_json, tmp_path):
    path = tmp_path / "eval.txt"
    path.write_text("".join(f"{k}\t{s}\n" for k, s in enumerate(SENTENCES)))
    data = load_data(path, [_ids(4)], role="evaluation", tokenizer=tokenizer_json)
    assert list(data.labels) == [0, 1, 2] and data.inputs["input_ids"].shape == (3, 4)  # truncated to the model


@pytest.mark.parametrize(("text", "specs", "options", "message"), [
    ("a\nb\n", [_ids()], {}, "is text: it needs the model's tokenizer"),
    ("0\ta\nb\n", [_ids()], {"tokenizer": True}, "line 2 has no label but others do"),
    ("\n\n", [_ids()], {"tokenizer": True}, "has no sentences"),
    ("a\n", [_ids(-1)], {"tokenizer": True}, "has no length to pad to"),
    ("a\n", [_ids(8)], {"tokenizer": True, "seq_len": 16}, "--seq-len 16 differs from the model's sequence length 8"),
    ("a\n", [InputSpec("image", (-1, 8, 8, 1))], {"tokenizer": True}, "not token ids [batch, sequence]"),
])
def test_what_text_cannot_feed_is_one_clear_error(tokenizer_json, tmp_path, text, specs, options, message):
    path = tmp_path / "data.txt"
    path.write_text(text)
    if options.get("tokenizer"):
        options = {**options, "tokenizer": tokenizer_json}
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_data(path, specs, role="calibration", **options)


def test_a_tokenizer_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    (tmp_path / "s.txt").write_text("hello\n")
    with pytest.raises(DataError, match="is not a tokenizer.json the tokenizers library reads"):
        load_data(tmp_path / "s.txt", [_ids()], role="calibration", tokenizer=str(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "s.txt", [_ids()], role="calibration", tokenizer=str(tmp_path / "none.json"))


def test_text_and_calib_together_are_refused_before_any_work(cli, tmp_path):
    result = cli("build", tmp_path / "m.keras", "--text", tmp_path / "s.txt", "--calib", tmp_path / "c.npz")
    assert result.exit_code == 1 and "--text and --calib both name calibration data" in result.stderr
