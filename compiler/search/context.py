"""What every format's candidate builder takes (one frozen context) and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekiln.compiler import Progress
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import Judge
from edgekiln.compiler.manifest_schema import Diagnosis
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.variants import Plan, Variant


@dataclass(frozen=True)
class BuildContext:
    """One format's share of a build's candidate search.

    graph: the working graph (pruned or not); source: its framework, "keras" or "onnx".
    plan: the candidates to build (the float32 baseline first) and why the others are not built.
    judge / criterion: the search's own decisions (calibration method, what stays in float) are judged on
        the tuning samples by fidelity alone, never on the evaluation labels.
    calibration: "auto" (plain int8 keeps min/max, the refinements tune it) or the method the user named.
    activation_type: the target's onnxruntime int8 activation type ("uint8" on x86, "int8" on ARM).
    batch: the compiled batch size where the source leaves it open.
    train: --train's samples, for quantization-aware fine-tuning (--qat); None without it.
    progress: where a long candidate (int8+adaround) reports each step, in a line.
    workdir: a scratch directory of this format's, removed after the build.
    fold: the builder may skip what only a shipped or timed model needs (the diagnosis, timing twins).
    """

    graph: Any
    source: str
    plan: Plan
    calib: Dataset | None
    judge: Judge
    criterion: Criterion
    workdir: Path
    int8_io: bool = False
    calibration: str = "auto"
    activation_type: str = "uint8"
    batch: int = 1
    train: Dataset | None = None
    progress: Progress = lambda line: None
    fold: bool = False  # a cross-fitting fold's build (search/crossfit.py): judged only, never shipped or timed

    @property
    def candidates(self) -> tuple[Variant, ...]:
        return self.plan.build


@dataclass(frozen=True)
class Builds:
    """One Candidate per planned candidate, in plan order, and the diagnosis of plain int8 (None without int8)."""

    built: tuple[Candidate, ...]
    diagnosis: Diagnosis | None = None


Builder = Callable[[BuildContext], Builds]
