"""Sentences -> token arrays for a transformer's integer inputs: a text file and a tokenizer.json.

A text file holds one sentence a line; a line `LABEL<TAB>sentence` (LABEL an integer) gives it a label, for
accuracy. The tokenizer is a Hugging Face `tokenizer.json` read by the `tokenizers` library: plain JSON (a
vocabulary and rules), nothing in it runs. Sentences are padded and truncated to the model's sequence length,
or to --seq-len where the model leaves that axis open.

Inputs are matched by name, as exporters name them: one with "mask" in it is the attention mask (1 on tokens,
0 on padding), one with "type" or "segment" the token types (0: one sentence), any other the token ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import DataError
from edgekiln.compiler.model_inputs import Dataset, InputSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TEXT_SUFFIXES = {".txt", ".tsv"}
PAD_TOKENS = ("[PAD]", "<pad>", "<PAD>")


def load_text(path: Path, specs: list[InputSpec], role: str, tokenizer: str | None,
              seq_len: int | None) -> Dataset:
    """The sentences of `path` as one token array per model input, with labels when every line has one."""
    if tokenizer is None:
        raise DataError(f"{role} data {path} is text: it needs the model's tokenizer",
                        "pass --tokenizer tokenizer.json (the one the model was trained with)")
    roles = token_roles(specs, role, path)
    length = sequence_length(specs, seq_len, role, path)
    sentences, labels = read_sentences(path, role)
    encoded = tokenizer_for(tokenizer, length).encode_batch(sentences)
    ids = np.array([e.ids for e in encoded], np.int64)
    mask = np.array([e.attention_mask for e in encoded], np.int64)
    arrays = {"ids": ids, "mask": mask, "types": np.array([e.type_ids for e in encoded], np.int64)}
    return Dataset({name: arrays[kind] for name, kind in roles.items()}, labels, str(path))


def token_roles(specs: list[InputSpec], role: str, path: Path) -> dict[str, str]:
    """What each token input holds, by input name: "ids", "mask" or "types" (runtime/text.py ROLES)."""
    return {spec.name: _role(spec, role, path) for spec in specs}


def _role(spec: InputSpec, role: str, path: Path) -> str:
    if np.dtype(spec.dtype).kind not in "iu" or len(spec.shape) != 2:
        raise DataError(f"{role} data {path} is text, but the model's input '{spec.name}' is {spec.dtype} "
                        f"{list(spec.shape)}, not token ids [batch, sequence]", "give an .npz with its arrays")
    name = spec.name.lower()
    return "mask" if "mask" in name else "types" if "type" in name or "segment" in name else "ids"


def sequence_length(specs: list[InputSpec], seq_len: int | None, role: str, path: Path) -> int:
    fixed = {spec.shape[1] for spec in specs if spec.shape[1] > 0}
    if len(fixed) > 1:
        raise DataError(f"the model's token inputs have different lengths {sorted(fixed)}; {path} cannot fill them")
    if fixed and seq_len is not None and seq_len not in fixed:
        raise DataError(f"--seq-len {seq_len} differs from the model's sequence length {fixed.pop()}",
                        "leave --seq-len out: the model fixes it")
    if fixed:
        return fixed.pop()
    if seq_len is None:
        raise DataError(f"the model's sequence axis is open, so {role} text {path} has no length to pad to",
                        "pass --seq-len N (the longest input the device will see, e.g. 64)")
    return seq_len


def read_sentences(path: Path, role: str) -> tuple[list[str], np.ndarray | None]:
    """The sentences of a text file, and their labels when every line has one."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {role} text {path}: {exc}", "write one UTF-8 sentence a line") from None
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{role} text {path} has no sentences", "write one sentence a line")
    split = [line.split("\t", 1) for line in lines]
    labelled = [len(parts) == 2 and parts[0].strip().lstrip("-").isdigit() for parts in split]
    if not any(labelled):
        return lines, None
    if not all(labelled):
        first = labelled.index(False) + 1
        raise DataError(f"{role} text {path}: line {first} has no label but others do",
                        "give every line LABEL<TAB>sentence, or none")
    return [parts[1].strip() for parts in split], np.array([int(parts[0]) for parts in split], np.int64)


def tokenizer_for(path: str, length: int) -> Tokenizer:
    from tokenizers import Tokenizer

    source = Path(path)
    if not source.is_file():
        raise DataError(f"tokenizer {source} does not exist", "pass the tokenizer.json the model was trained with")
    try:
        tokenizer = Tokenizer.from_file(str(source))
    except Exception as exc:  # noqa: BLE001  (the Rust library raises plain Exception with its parser's message)
        raise DataError(f"{source} is not a tokenizer.json the tokenizers library reads ({str(exc)[:160]})",
                        "save it with tokenizer.save('tokenizer.json')") from None
    padding = pad_id(tokenizer)
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length, pad_id=padding, pad_token=tokenizer.id_to_token(padding) or "[PAD]")
    return tokenizer


def pad_id(tokenizer: Tokenizer) -> int:
    """The tokenizer's own padding id when it has one, else its pad token's, else 0 (BERT's [PAD])."""
    if tokenizer.padding is not None:
        return int(tokenizer.padding["pad_id"])
    found = [token_id for t in PAD_TOKENS if (token_id := tokenizer.token_to_id(t)) is not None]
    return found[0] if found else 0
