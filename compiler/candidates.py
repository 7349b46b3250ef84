"""The variants a build considers, as data; judging and timing them side by side through the runtime.

CANDIDATES lists, per artifact format, every variant its emitter can build; `plan` picks the ones a
--quantize mode asks for. A format's emitter (pipeline.VARIANT_EMITTERS) builds its candidates and returns one
Built per candidate; another format adds a row here and an emitter there, nothing else changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime import Model

from . import measure
from .data import Dataset
from .recipe import Quantize
from .stages import Datasets


@dataclass(frozen=True)
class Candidate:
    """One variant: artifact format, number format, and the int8 refinements it uses.

    rewrites: exact rewrites (BN folding, equalisation) and bias correction on the Keras model first.
    tune_calibration: min/max, percentile or entropy ranges, whichever is most faithful on held-back data.
    fallback: "ops" keeps in float the int8 ops outside the fast path; "layers" also the worst layers,
        more of them until the criterion holds.
    activation: int8 activation type when it differs from the target's ("" = the target's; ONNX only).
    """

    name: str
    format: str
    quantize: Quantize
    rewrites: bool = False
    tune_calibration: bool = False
    fallback: str = ""
    activation: str = ""


CANDIDATES: dict[str, tuple[Candidate, ...]] = {
    "tflite": (
        Candidate("float32", "tflite", Quantize.none),
        Candidate("float16", "tflite", Quantize.float16),
        Candidate("dynamic", "tflite", Quantize.dynamic),
        Candidate("int8", "tflite", Quantize.int8),
        Candidate("int8+rewrites", "tflite", Quantize.int8, rewrites=True, tune_calibration=True),
        Candidate("int8+fallback", "tflite", Quantize.int8, rewrites=True, tune_calibration=True, fallback="ops"),
        Candidate("int8+fallback+layers", "tflite", Quantize.int8, rewrites=True, tune_calibration=True,
                  fallback="layers"),
    ),
    # onnxruntime QDQ: "int8" uses the target's activation type and min/max; "int8+calibration" the most
    # faithful calibration method; "int8+s8s8" int8 activations where the target's are uint8 (x86: no u8s8
    # saturation, slower); "int8+exclude" keeps the worst nodes in float. The last two use the chosen method.
    "onnx": (
        Candidate("float32", "onnx", Quantize.none),
        Candidate("dynamic", "onnx", Quantize.dynamic),
        Candidate("int8", "onnx", Quantize.int8),
        Candidate("int8+calibration", "onnx", Quantize.int8, tune_calibration=True),
        Candidate("int8+s8s8", "onnx", Quantize.int8, activation="int8"),
        Candidate("int8+exclude", "onnx", Quantize.int8, fallback="layers"),
    ),
}
BASELINE = "float32"

# What each --quantize mode builds besides the float32 baseline (`plan` keeps the format's own names).
# `int8` forces full-integer models: plain, with rewrites and tuned calibration, with int8 activations
# (no float fallback or excluded nodes, which would not be full-integer).
PLANS: dict[Quantize, tuple[str, ...]] = {
    Quantize.auto: ("float16", "dynamic", "int8", "int8+rewrites", "int8+fallback", "int8+fallback+layers",
                    "int8+calibration", "int8+s8s8", "int8+exclude"),
    Quantize.int8: ("int8", "int8+rewrites", "int8+calibration", "int8+s8s8"),
    Quantize.float16: ("float16",),
    Quantize.dynamic: ("dynamic",),
    Quantize.none: (),
}


def plan(quantize: Quantize, formats: list[str], calibrated: bool = True) -> list[Candidate]:
    """The candidates to build, baseline first; without calibration data no int8 candidate is possible."""
    wanted = {BASELINE, *PLANS[quantize]}
    chosen = [c for fmt in formats for c in CANDIDATES[fmt] if c.name in wanted]
    return [c for c in chosen if calibrated or c.quantize is not Quantize.int8]


@dataclass(frozen=True)
class Built:
    """A built candidate (model None = not built; notes say why) and what went into it.

    timed_as: the model timed in its place when this host cannot time it representatively (a note says so).
    layouts: tensor name -> layout change the converter made (emit.Emitted.layouts), e.g. onnx2tf's NHWC.
    """

    candidate: Candidate
    model: bytes | None
    notes: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)
    timed_as: bytes | None = None
    layouts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Quality:
    """How faithful a model is: against the source model on held-back samples, and labelled accuracy."""

    sqnr_db: float | None
    agreement: float | None
    accuracy: float | None = None
    accuracy_drop: float | None = None


class Judge:
    """Fidelity and accuracy of any candidate's bytes, through the runtime, against the source model.

    The source model's outputs are computed once; every candidate is compared with the same arrays.
    """

    def __init__(self, graph: Any, data: Datasets, threads: int, main_output: str | None = None) -> None:
        self.threads, self.main = threads, main_output
        self.check = data.fidelity_set
        self._reference = dict(zip(graph.output_names, graph.run(self.check.inputs), strict=True))
        labelled = data.evaluation if data.evaluation is not None and data.evaluation.labels is not None else None
        self.evaluation = labelled
        if labelled is not None:
            source = dict(zip(graph.output_names, graph.run(labelled.inputs), strict=True))
            self.reference_accuracy = measure.accuracy(list(source.values()), labelled.labels, list(source),
                                                       main_output)

    def __call__(self, model_format: str, model_bytes: bytes, layouts: dict | None = None) -> Quality:
        model = measure.open_model(model_format, model_bytes, self.threads, layouts)
        outputs = measure.predict(model, self.check)
        names = [info.name for info in model.outputs]
        fidelity = measure.fidelity(self._ordered(model), outputs, names)
        accuracy = drop = None
        if self.evaluation is not None:
            ours = measure.predict(model, self.evaluation)
            accuracy = round(measure.accuracy(ours, self.evaluation.labels, names, self.main), 3)
            drop = round(self.reference_accuracy - accuracy, 3)
        return Quality(fidelity["sqnr_db"], fidelity.get("top1_agreement"), accuracy, drop)

    def _ordered(self, model: Model) -> list[np.ndarray]:
        if all(info.name in self._reference for info in model.outputs):
            return [self._reference[info.name] for info in model.outputs]
        return list(self._reference.values())


ROUND_MS = 25.0        # each round times every candidate for about this long (at least min_runs runs)
MAX_RUNS_PER_ROUND = 500


def interleaved_latency(models: dict[str, Model], sample: Dataset, min_runs: int, rounds: int) -> dict[str, dict]:
    """p50 of every model, timed round by round in turn so that a shared host's drift hits all alike.

    In each round every model runs for about ROUND_MS (at least `min_runs` invocations); a model's p50 is
    the median of its round p50s, so one burst of load from another process does not decide a choice.
    """
    feeds = {name: [_raw(sample, m, info) for info in m.inputs] for name, m in models.items()}
    runs = {}
    for name, model in models.items():  # warm-up (first runs allocate and pack weights), then a run count
        warm = [_timed(model, feeds[name]) for _ in range(5)]
        runs[name] = int(np.clip(ROUND_MS / max(min(warm), 1e-3), min_runs, MAX_RUNS_PER_ROUND))
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_round[name].append(float(np.median([_timed(model, feeds[name]) for _ in range(runs[name])])))
    return {name: {"p50_ms": round(float(np.median(v)), 4), "runs": runs[name] * rounds, "rounds": rounds}
            for name, v in per_round.items()}


def _timed(model: Model, feed: list[np.ndarray]) -> float:
    start = time.perf_counter()
    model.backend.run(feed)
    return (time.perf_counter() - start) * 1e3


def _raw(sample: Dataset, model: Model, info: Any) -> np.ndarray:
    from runtime.model import quantize, to_compiled

    return quantize(to_compiled(sample.inputs[info.name][:1], model.layouts.get(info.name)), info)
