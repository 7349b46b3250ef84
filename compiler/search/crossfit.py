"""Cross-fitting of the calibrated candidates (compiler/folds.py): each format's int8 candidates built once more
per fold, from the other folds' samples and with the search's decisions (calibration method, what stays float)
made on those samples too, their models run on the fold none of it saw, and the outputs pooled into sample
order. The judge (evaluate/judge.py) then reads every calibration sample, each judged by a model whose
calibration and tuning never saw it; the shipped model is the same procedure run on every sample.

Only int8 candidates depend on the calibration samples: float32, float16, dynamic and the fused graphs are
judged on every sample directly. Where a fold did not build a variant the final build did (its refinement
was not needed, or was dropped as no more faithful), the fold ships what the procedure would have shipped in
its place: the nearest int8 variant before it in the catalogue that the fold built, and the note says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgekiln.compiler.data import Datasets, tuning_of
from edgekiln.compiler.errors import EdgekilnError
from edgekiln.compiler.evaluate.runner import open_model, predict
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.context import BuildContext, Builder
from edgekiln.compiler.search.variants import VARIANTS, Plan, Variant


@dataclass(frozen=True)
class CrossFitted:
    """One candidate's outputs on every calibration sample, each from the fold model that held it out
    (in the model's output order), and the folds where another variant stood in for it."""

    outputs: list[np.ndarray]
    folds: int
    stand_ins: tuple[str, ...] = ()

    @property
    def note(self) -> str:
        size = self.outputs[0].shape[0]
        note = (f"cross-fitted: each of the {size} samples judged by the model calibrated and tuned without it "
                f"({self.folds} folds)")
        return note + (f"; {', '.join(self.stand_ins)}" if self.stand_ins else "")


def calibrated(variant: Variant) -> bool:
    """Whether a variant's model depends on the calibration samples (static int8 ranges)."""
    return variant.quantize is Quantize.int8


def run(contexts: dict[str, BuildContext], builders: dict[tuple[str, str], Builder], data: Datasets, threads: int,
        compared: bool, built: set[str]) -> tuple[dict[str, CrossFitted], dict[str, str]]:
    """Every calibrated candidate's pooled outputs by row name, and why a candidate could not be cross-fitted
    (a fold failed to build any int8 model it could stand in with). built: the row names the build on every
    sample made (a variant it did not make has no row, so its folds need not make it either)."""
    folds = data.folds
    assert folds is not None
    per_fold: dict[str, list[list[np.ndarray]]] = {}
    stand_ins: dict[str, list[str]] = {}
    missing: dict[str, str] = {}
    for fold in range(folds.k):
        judged = data.fold_judged(fold)
        calib: Dataset | None = None  # read (calib_samples of them) only when a format builds this fold's models
        for model_format, ctx in contexts.items():
            int8s = tuple(v for v in ctx.plan.build if calibrated(v) and _key(model_format, v, compared) in built)
            if not int8s or ctx.calib is None:
                continue
            calib = calib if calib is not None else data.fold_calib(fold)
            made = _fold_build(builders[ctx.source, model_format], ctx, int8s, calib, fold)
            outputs: dict[str, list[np.ndarray]] = {}  # each fold model run once, whoever it stands in for
            for variant in int8s:
                key = _key(model_format, variant, compared)
                used = _stand_in(variant, made)
                if used is None:
                    missing.setdefault(key, f"fold {fold + 1} of {folds.k} built no int8 model")
                    continue
                if used.variant.name not in outputs:
                    model = open_model(model_format, used.model or b"", threads, used.layouts)
                    outputs[used.variant.name] = predict(model, judged)
                per_fold.setdefault(key, []).append(outputs[used.variant.name])
                if used.variant.name != variant.name:
                    stand_ins.setdefault(key, []).append(f"fold {fold + 1}: {used.variant.name} in its place")
    pooled = {key: CrossFitted(folds.pool(runs), folds.k, tuple(stand_ins.get(key, ())))
              for key, runs in per_fold.items() if key not in missing}
    return pooled, missing


def _key(model_format: str, variant: Variant, compared: bool) -> str:
    """A candidate's row name (as search/select.py names it)."""
    return f"{model_format}:{variant.name}" if compared else variant.name


def _fold_build(builder: Builder, ctx: BuildContext, int8s: tuple[Variant, ...], calib: Dataset,
                fold: int) -> dict[str, Candidate]:
    """One format's int8 candidates of one fold, by variant name (built ones only): calibrated and tuned on
    the fold's calibration samples, in a scratch directory of the fold's own (the ranges cached there are
    the fold's)."""
    workdir = ctx.workdir / f"fold_{fold + 1}"
    workdir.mkdir(parents=True, exist_ok=True)
    fold_ctx = replace(ctx, plan=Plan(int8s), calib=calib, judge=ctx.judge.on(tuning_of(calib)),
                       workdir=workdir, fold=True)
    try:
        made = builder(fold_ctx).built
    except EdgekilnError:  # this fold's conversion failed: its candidates are not cross-fitted (said so)
        return {}
    return {b.variant.name: b for b in made if b.model is not None}


def _stand_in(variant: Variant, made: dict[str, Candidate]) -> Candidate | None:
    """The fold's model of `variant`, else of the nearest int8 variant before it in the catalogue."""
    catalogue = [v.name for v in VARIANTS[variant.format] if calibrated(v)]
    before = catalogue[: catalogue.index(variant.name) + 1] if variant.name in catalogue else [variant.name]
    return next((made[name] for name in reversed(before) if name in made), None)
