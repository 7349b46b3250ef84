"""`edgekiln prune-scan`: the per-group sensitivity table (Li et al. 2017, Fig. 2), printed and saved.

Each prunable channel group is pruned alone at each ratio, without recovery, and the score drop
is measured: accuracy with labelled data, else top-1 agreement with the unpruned model.

A model with MultiHeadAttention layers (a transformer encoder) gets the encoder scan instead
(compiler/prune/encoder_scan.py): each head of each attention layer masked alone and each encoder block
skipped alone, the accuracy drop with labels and the output cosine to the unmasked model. An ONNX source is
scanned the same way when it is an encoder as torch.onnx exports one (compiler/graph/onnx_attention.py finds
its attention layers), run in onnxruntime.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.table import Table

from edgekiln.compiler.console import console
from edgekiln.compiler.data import check_label_range, in_model_types, load_data
from edgekiln.compiler.errors import DataError, InputModelError, RecipeError
from edgekiln.compiler.graph import detect_format, keras_graph
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.paths import existing, writable_file
from edgekiln.compiler.prune import encoder_scan, groups, importance, sensitivity
from edgekiln.compiler.prune.driver import PruningJudge
from edgekiln.compiler.pruning_stage import KerasSubject
from edgekiln.compiler.text import TEXT_SUFFIXES
from edgekiln.runtime import jsonsafe

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.keras_types import KerasModel

TAKES = "takes a Keras model (.keras or .h5) or an ONNX transformer encoder"


def run_scan(model_path: Path, eval_path: Path | None, calib_path: Path | None, criterion: str,
             ratios: tuple[float, ...] | None, samples: int, json_out: Path | None, csv_out: Path | None,
             unsafe: bool, tokenizer: Path | None = None, seq_len: int | None = None
             ) -> sensitivity.Scan | encoder_scan.EncoderScan:
    """Scan, print the table and the blocked groups, and write JSON / CSV if asked. Text data (.txt) is
    tokenized with `tokenizer` to `seq_len` as in a build."""
    data_path = eval_path or calib_path
    if data_path is None:
        raise RecipeError("prune-scan needs data to measure with", "pass --eval DATA (labelled: accuracy drop)")
    _check_options(model_path, data_path, ratios, samples, json_out, csv_out)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        if detect_format(model_path) == "onnx":
            encoder = _scan_onnx(model_path, data_path, samples, tokenizer, seq_len, Path(work))
            return _report_encoder(encoder, model_path, json_out, csv_out)
        graph = keras_graph.load(model_path, detect_format(model_path), Path(work), unsafe=unsafe)
        if graph.keras_model is None:
            raise RecipeError(f"prune-scan {TAKES}")
        dataset = _load(data_path, graph.inputs, tokenizer, seq_len)
        if dataset.labels is not None:
            outputs = graph.run(dataset.take(0, 1).inputs)
            check_label_range(dataset, int(np.prod(outputs[0].shape[1:])), "evaluation")
        if any(type(layer).__name__ == "MultiHeadAttention" for layer in graph.keras_model.layers):
            encoder = _scan_encoder(graph.keras_model, dataset.take(0, samples))
            return _report_encoder(encoder, model_path, json_out, csv_out)
        subject = KerasSubject(graph.keras_model, None)
        analysis = subject.analysis
        scores = importance.group_scores(analysis, criterion)
        judge = PruningJudge(subject, next(iter(dataset.inputs.values()))[:samples],
                      None if dataset.labels is None else dataset.labels[:samples])
        result = sensitivity.scan(analysis, scores, judge.masked_score, tuple(ratios or sensitivity.SCAN_RATIOS),
                                  judge.metric, len(judge.x))
    _print(result, analysis, model_path)
    blocked = [{"layers": list(g.producers), "reasons": list(g.blocked)} for g in analysis.blocked]
    _write({**result.to_dict(), "criterion": str(criterion), "blocked": blocked}, json_out, csv_out,
           _csv_rows(result))
    return result


def _scan_encoder(model: KerasModel, dataset: Dataset) -> encoder_scan.EncoderScan:
    """The Keras side of the encoder scan: heads masked in place (restored), blocks skipped in a rebuilt copy."""
    from edgekiln.compiler.encoder_slimming import keras_output
    from edgekiln.compiler.graph import keras_heads, keras_layers

    x = next(iter(dataset.inputs.values()))
    layers = {layer.name: layer for layer in model.layers}
    attention = [next(n for n in b.layers if type(layers.get(n)).__name__ == keras_heads.MHA)
                 for b in keras_layers.encoder_blocks(model)]
    return encoder_scan.scan(lambda m: keras_output(m, x), model, dataset.labels, keras_heads.head_facts(model, x),
                             lambda name, h: keras_heads.head_masked(model, name, h),
                             list(zip(attention, keras_layers.block_params(model), strict=True)),
                             lambda k: keras_layers.without(model, k), len(x))


def _load(data_path: Path, specs: list, tokenizer: Path | None, seq_len: int | None) -> Dataset:
    """The evaluation data in the model's input types (.txt tokenized as in a build)."""
    return in_model_types(load_data(data_path, specs, role="evaluation", seq_len=seq_len,
                                    tokenizer=None if tokenizer is None else str(tokenizer)), specs)


def _report_encoder(encoder: encoder_scan.EncoderScan, model_path: Path, json_out: Path | None,
                    csv_out: Path | None) -> encoder_scan.EncoderScan:
    _print_encoder(encoder, model_path)
    _write(encoder.to_dict(), json_out, csv_out, _encoder_csv_rows(encoder))
    return encoder


def _scan_onnx(model_path: Path, data_path: Path, samples: int, tokenizer: Path | None, seq_len: int | None,
               work: Path) -> encoder_scan.EncoderScan:
    """An ONNX encoder (torch.onnx's attention pattern) scanned in onnxruntime; any other ONNX model refused."""
    from edgekiln.compiler.graph import onnx_graph
    from edgekiln.compiler.graph.onnx_attention import attention_layers

    graph = onnx_graph.load(model_path, work, batch=min(samples, 64),
                            data_shapes=_onnx_shapes(model_path, data_path, seq_len))
    layers, blocked = attention_layers(graph.model)
    if not layers:
        why = "; ".join(f"{n}: {r}" for n, r in blocked.items()) or "no self-attention layer"
        raise InputModelError(f"prune-scan {TAKES}; {model_path.name} has no attention layer it can mask ({why})",
                              "`edgekiln build --prune` prunes the channels of ONNX sources")
    return scan_onnx_encoder(graph.model, _load(data_path, graph.inputs, tokenizer, seq_len).take(0, samples))


def _onnx_shapes(model_path: Path, data_path: Path, seq_len: int | None) -> dict[str, dict[str, tuple[int, ...]]]:
    """The sample shapes that close the model's open axes: the .npz's, else (text) --seq-len tokens per input."""
    from edgekiln.compiler.graph.shapes import data_shapes

    found = data_shapes({"evaluation data": str(data_path)})
    if found or data_path.suffix not in TEXT_SUFFIXES:
        return found
    import onnx

    from edgekiln.compiler.graph.shapes import sequence_shapes

    inputs = onnx.load(str(model_path), load_external_data=False).graph.input
    if seq_len is None:
        if any(not d.dim_value for i in inputs for d in i.type.tensor_type.shape.dim[1:]):
            raise DataError(f"the model's sequence axis is open, so evaluation text {data_path} has no length to "
                            "pad to", "pass --seq-len N (the longest input the device will see, e.g. 64)")
        return {}
    return sequence_shapes(model_path, seq_len)


def scan_onnx_encoder(model: onnx.ModelProto, dataset: Dataset) -> encoder_scan.EncoderScan:
    """The ONNX side of the encoder scan: heads masked and blocks skipped in copies of `model` (which stays as it
    is), each run once in onnxruntime; per-token outputs judged on the real tokens (attention_mask 1) only."""
    from edgekiln.compiler.encoder_slimming import vector_output
    from edgekiln.compiler.graph import onnx_heads, onnx_layers
    from edgekiln.compiler.graph.onnx_attention import attention_layers, token_rows

    feed, mask = dataset.inputs, dataset.inputs.get("attention_mask")
    if dataset.labels is not None:
        first = vector_output(model, dataset.take(0, 1).inputs)
        if first.ndim != 2:
            raise DataError(f"evaluation data {dataset.origin} has labels 'y', but the encoder's judged output is "
                            f"per token ({first.shape[1]} tokens x {first.shape[-1]}), not class scores",
                            "leave 'y' out: the scan then reports the output cosine to the unmasked model")
        check_label_range(dataset, first.shape[1], "evaluation")
    names = {a.x: a.name for a in attention_layers(model)[0]}
    try:
        blocks = [(names[b.entry], p) for b, p in zip(onnx_layers.encoder_blocks(model),
                                                      onnx_layers.block_params(model), strict=True)]
    except RecipeError as exc:  # heads are still scanned
        console.print(f"blocks not scanned: {exc}")
        blocks = []
    return encoder_scan.scan(lambda m: token_rows(vector_output(m, feed), mask), model, dataset.labels,
                             onnx_heads.head_facts(model, feed),
                             lambda name, h: onnx_heads.head_masked(model, name, h), blocks,
                             lambda k: onnx_layers.without(model, k), dataset.size)


def _check_options(model_path: Path, data_path: Path, ratios: tuple[float, ...] | None, samples: int,
                   json_out: Path | None, csv_out: Path | None) -> None:
    """Everything that can be refused before the model loads (the scan itself takes minutes)."""
    if ratios is not None and not (ratios and all(0 < r < 1 for r in ratios)):  # NaN fails too
        raise RecipeError(f"ratios must lie in (0, 1), got {list(ratios)}", "e.g. --ratios 0.25,0.5,0.75")
    if samples < 1:
        raise RecipeError(f"--samples must be at least 1, got {samples}")
    if detect_format(model_path) not in ("keras", "h5", "onnx"):  # a SavedModel cannot be rebuilt layer by layer
        raise InputModelError(f"prune-scan {TAKES}, got {model_path}",
                              "load it in Keras and save it as .keras")
    existing(data_path, "evaluation data", error=DataError)
    for flag, path in (("--json", json_out), ("--csv", csv_out)):
        if path is not None:
            writable_file(path, f"{flag} file")


def _print(result: sensitivity.Scan, analysis: groups.Analysis, model_path: Path) -> None:
    table = Table(title=f"{model_path.name}: {result.metric} drop (points) when one group loses a share of its "
                        f"channels, no recovery ({result.samples} samples; unpruned {result.reference:.2f}%)")
    table.add_column("group (producers)", overflow="fold")
    table.add_column("channels", justify="right")
    for ratio in result.ratios:
        table.add_column(f"{ratio:.0%}", justify="right")
    table.add_column(f"MACs removed at {result.ratios[-1]:.0%}", justify="right")
    for row in result.rows:
        table.add_row(row.label, str(row.channels), *[f"{d:.2f}" for d in row.drops],
                      f"{row.macs_removed[-1] / result.macs:.1%}")
    console.print(table)
    for group in analysis.blocked:
        console.print(f"not prunable: {group.label} ({group.channels} channels): {'; '.join(group.blocked)}")


def _print_encoder(result: encoder_scan.EncoderScan, model_path: Path) -> None:
    labelled = result.reference is not None
    for kind, rows in (("head", result.heads), ("block", result.blocks)):
        what = "one attention head masked" if kind == "head" else "one encoder block skipped"
        table = Table(title=f"{model_path.name}: {what} alone, no recovery ({result.samples} samples"
                            + (f"; unmasked accuracy {result.reference:.2f}%)" if labelled else ")"))
        table.add_column("attention layer" if kind == "head" else "block (its attention layer)", overflow="fold")
        table.add_column(kind, justify="right")
        table.add_column("params", justify="right")
        if labelled:
            table.add_column("accuracy drop (points)", justify="right")
        table.add_column("output cosine", justify="right")
        table.add_column("cosine p5", justify="right")
        if kind == "head":
            table.add_column("layer-output score", justify="right")
        for r in rows:
            table.add_row(r.layer, str(r.index), f"{r.params:,}",
                          *([f"{r.quality.accuracy_drop:.2f}"] if labelled else []),
                          f"{r.quality.cosine_mean:.4f}", f"{r.quality.cosine_p5:.4f}",
                          *([f"{r.score:.4g}"] if kind == "head" else []))
        console.print(table)
    console.print("cosine: each output vector's cosine to the unmasked model's, mean and 5th percentile; "
                  "layer-output score: the head's mean squared contribution to its layer's output, the criterion "
                  "--prune-heads removes heads by")


def _write(data: Mapping[str, object], json_out: Path | None, csv_out: Path | None, rows: list[list]) -> None:
    if json_out:
        json_out.write_text(jsonsafe.dumps(data, indent=2) + "\n")
    if csv_out:
        with csv_out.open("w", newline="") as f:
            csv.writer(f).writerows(rows)


def _csv_rows(result: sensitivity.Scan) -> list[list]:
    rows: list[list] = [["group", "channels", "ratio", "drop", "macs_removed", "metric", "reference"]]
    for row in result.rows:
        for ratio, drop, removed in zip(result.ratios, row.drops, row.macs_removed, strict=True):
            rows.append([row.label, row.channels, ratio, drop, removed, result.metric, result.reference])
    return rows


def _encoder_csv_rows(result: encoder_scan.EncoderScan) -> list[list]:
    fields = ["kind", "layer", "index", "params", "accuracy_drop", "cosine_mean", "cosine_p5", "score"]
    facts: list[Mapping[str, object]] = [r.to_dict() for r in (*result.heads, *result.blocks)]
    return [fields] + [[row[f] for f in fields] for row in facts]
