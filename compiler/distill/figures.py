"""The distillation report: student against teacher (params, MACs, accuracy with its paired interval, the target's
latency estimate), as a typed record, its JSON (written beside the student) and its printed table.

The latency estimate is the target's cost model (device/estimate.py) on each model compiled to float32 TFLite:
both sides compiled the same way, so their ratio is the width's gain, whatever quantization follows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TypedDict

from rich.table import Table

from edgekiln.compiler import manifest_schema
from edgekiln.compiler.console import console
from edgekiln.compiler.distill.engine import Outcome
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.prune.recovery_facts import Training

ESTIMATE_FORMAT = "float32 TFLite"


class Side(TypedDict):
    """One model's figures: params, MACs, score on the judging samples, the estimate (ms; None without figures)."""

    params: int
    macs: int
    score: float
    estimate_ms: float | None


class ProbeFacts(TypedDict):
    width: float
    drop: float
    within_budget: bool


class Report(TypedDict):
    """The JSON written beside the student (STUDENT.json)."""

    teacher: str
    student_file: str
    width: float | None
    init: str
    metric: str
    judged_on: str
    teacher_figures: Side
    student_figures: Side
    macs_ratio: float
    paired: manifest_schema.PairedDrop
    target: str
    estimate_of: str
    training: Training
    scaled_groups: int
    fixed_groups: list[str]
    budget: float | None
    probes: list[ProbeFacts]


def estimate_ms(model: KerasModel, target_name: str) -> float | None:
    """The target's latency estimate of `model` compiled to float32 TFLite (None: the target has no figures)."""
    from edgekiln.compiler.analyze.tflite_stats import tflite_stats
    from edgekiln.compiler.device.estimate import candidate_ms
    from edgekiln.compiler.emit.tflite_convert import convert
    from edgekiln.compiler.recipe import Quantize
    from edgekiln.compiler.tf_env import quiet_fds
    from edgekiln.targets import load

    with tempfile.TemporaryDirectory(prefix="edgekiln-") as work:
        with quiet_fds():
            model.export(str(Path(work) / "saved"), verbose=False)
        compiled = convert(Path(work) / "saved", Quantize.none, None)
    return candidate_ms(load(target_name), "tflite", tflite_stats(compiled).records)


def report(outcome: Outcome, teacher: str, student_file: str, init: str, target: str,
           estimates: tuple[float | None, float | None]) -> Report:
    s = outcome.student
    return {"teacher": teacher, "student_file": student_file, "width": s.width, "init": init,
            "metric": outcome.metric, "judged_on": outcome.judged_on,
            "teacher_figures": {"params": outcome.teacher_params, "macs": outcome.teacher_macs,
                                "score": round(outcome.teacher_accuracy, 3), "estimate_ms": estimates[0]},
            "student_figures": {"params": s.params, "macs": s.macs, "score": round(s.accuracy, 3),
                                "estimate_ms": estimates[1]},
            "macs_ratio": round(s.macs / max(outcome.teacher_macs, 1), 4), "paired": s.drop.to_dict(),
            "target": target, "estimate_of": ESTIMATE_FORMAT, "training": s.training,
            "scaled_groups": outcome.scaled_groups, "fixed_groups": list(outcome.fixed_groups),
            "budget": outcome.budget,
            "probes": [{"width": p.width, "drop": p.drop, "within_budget": p.within} for p in outcome.probes]}


def print_report(r: Report) -> None:
    """The table: teacher and student side by side, then the drop with its interval."""
    t, s = r["teacher_figures"], r["student_figures"]
    width = "own model" if r["width"] is None else f"width {r['width']:g}"
    table = Table(title=f"distill: student ({width}, {r['init']}) vs teacher; {r['metric']} on {r['judged_on']}")
    for column in ("", "params", "MACs", r["metric"], f"{r['target']} estimate ({r['estimate_of']})"):
        table.add_column(column, justify="right" if column else "left")
    for name, side in (("teacher", t), ("student", s)):
        ms = "n/a" if side["estimate_ms"] is None else f"{side['estimate_ms']:.3f} ms"
        table.add_row(name, f"{side['params']:,}", f"{side['macs']:,}", f"{side['score']:.2f}%", ms)
    console.print(table)
    p = r["paired"]
    console.print(f"drop {p['drop']:+.2f} points, 95% interval [{p['interval'][0]:+.2f}, {p['interval'][1]:+.2f}] "
                  f"(paired, {p['samples']} samples: {p['lost']} lost, {p['gained']} gained); MACs "
                  f"{r['macs_ratio']:.1%} of the teacher's")
    for probe in r["probes"]:
        console.print(f"  auto probe: width {probe['width']:g}, drop {probe['drop']:+.2f} "
                      f"({'within' if probe['within_budget'] else 'over'} the budget of {r['budget']:g})")
    console.print(f"student written to {r['student_file']}")
