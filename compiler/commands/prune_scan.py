"""`edgekiln prune-scan`: the per-group sensitivity table (Li et al. 2017, Fig. 2), printed and saved.

Each prunable channel group is pruned alone at each ratio, without recovery, and the score drop
is measured: accuracy with labelled data, else top-1 agreement with the unpruned model.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
from rich.table import Table

from edgekiln.compiler.data import check_label_range, in_model_types, load_data
from edgekiln.compiler.errors import DataError, InputModelError, RecipeError
from edgekiln.compiler.graph import detect_format
from edgekiln.compiler.graph import keras as keras_graph
from edgekiln.compiler.paths import existing, writable_file
from edgekiln.compiler.prune import groups, importance, sensitivity
from edgekiln.compiler.prune.driver import Scorer
from edgekiln.compiler.prune.stage import KerasSubject
from edgekiln.compiler.summary import console
from edgekiln.runtime import jsonsafe


def run_scan(model_path: Path, eval_path: Path | None, calib_path: Path | None, criterion: str,
             ratios: tuple[float, ...] | None, samples: int, json_out: Path | None, csv_out: Path | None,
             unsafe: bool) -> sensitivity.Scan:
    """Scan, print the table and the blocked groups, and write JSON / CSV if asked."""
    data_path = eval_path or calib_path
    if data_path is None:
        raise RecipeError("prune-scan needs data to measure with", "pass --eval DATA (labelled: accuracy drop)")
    _check_options(model_path, data_path, ratios, samples, json_out, csv_out)
    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        graph = keras_graph.load(model_path, detect_format(model_path), Path(work), unsafe=unsafe)
        if graph.keras_model is None:
            raise RecipeError("prune-scan needs a Keras model (.keras or .h5)")
        dataset = in_model_types(load_data(data_path, graph.inputs, role="evaluation"), graph.inputs)
        if dataset.labels is not None:
            outputs = graph.run(dataset.take(0, 1).inputs)
            check_label_range(dataset, int(np.prod(outputs[0].shape[1:])), "evaluation")
        subject = KerasSubject(graph.keras_model, None)
        analysis = subject.analysis
        scores = importance.group_scores(analysis, criterion)
        judge = Scorer(subject, next(iter(dataset.inputs.values()))[:samples],
                      None if dataset.labels is None else dataset.labels[:samples])
        result = sensitivity.scan(analysis, scores, judge.masked_score, tuple(ratios or sensitivity.SCAN_RATIOS),
                                  judge.metric, len(judge.x))
    _print(result, analysis, model_path)
    if json_out:
        blocked = [{"layers": list(g.producers), "reasons": list(g.blocked)} for g in analysis.blocked]
        json_out.write_text(jsonsafe.dumps({**result.to_dict(), "criterion": str(criterion), "blocked": blocked},
                                           indent=2) + "\n")
    if csv_out:
        _write_csv(result, csv_out)
    return result


def _check_options(model_path: Path, data_path: Path, ratios: tuple[float, ...] | None, samples: int,
                   json_out: Path | None, csv_out: Path | None) -> None:
    """Everything that can be refused before the model loads (the scan itself takes minutes)."""
    if ratios is not None and not (ratios and all(0 < r < 1 for r in ratios)):  # NaN fails too
        raise RecipeError(f"ratios must lie in (0, 1), got {list(ratios)}", "e.g. --ratios 0.25,0.5,0.75")
    if samples < 1:
        raise RecipeError(f"--samples must be at least 1, got {samples}")
    if detect_format(model_path) not in ("keras", "h5"):  # scanned layer by layer in Keras
        raise InputModelError(f"prune-scan needs a Keras model (.keras or .h5), got {model_path}",
                              "`edgekiln build --prune` prunes ONNX sources too")
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


def _write_csv(result: sensitivity.Scan, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "channels", "ratio", "drop", "macs_removed", "metric", "reference"])
        for row in result.rows:
            for ratio, drop, removed in zip(result.ratios, row.drops, row.macs_removed, strict=True):
                writer.writerow([row.label, row.channels, ratio, drop, removed, result.metric, result.reference])
