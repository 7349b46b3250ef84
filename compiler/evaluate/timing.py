"""Host timing: latency measured on this machine through the runtime, labelled as such, and the host's
identity (CPU, the instruction-set features that change int8 speed or results). Models are timed side by
side, round by round, so that a shared host's drift hits them all alike."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from edgekiln.compiler.manifest_schema import HostLatency, provenance
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.runtime import Model
from edgekiln.runtime.backends import TensorInfo

if TYPE_CHECKING:
    from edgekiln.compiler.recipe import Recipe
    from edgekiln.targets import Target


class HostIsa(TypedDict):
    """This machine's int8-relevant instruction-set features (ISA_FLAGS it has) and its int8 dot product."""

    machine: str
    flags: list[str]
    int8_dot_product: str


class RoundTiming(TypedDict):
    """One model's time in interleaved rounds: the median of its round p50s, its runs in all, the rounds."""

    p50_ms: float
    runs: int
    rounds: int


def host_latency(model: Model, dataset: Dataset, runs: int, warmup: int = 10) -> HostLatency:
    """Init, first and steady-state latency on this host, labelled as such."""
    result = model.benchmark([dataset.inputs[info.name] for info in model.inputs], runs=runs, warmup=warmup)
    return {"measured_on": "host", "cpu": host_cpu(), "machine": platform.machine(), "isa": host_isa()["flags"],
            "runtime": result["runtime"], "runtime_version": result["runtime_version"], "threads": result["threads"],
            "init_ms": result["init_ms"], "first_ms": result["first_ms"], "p50_ms": result["p50_ms"],
            "p90_ms": result["p90_ms"], "p99_ms": result["p99_ms"], "mean_ms": result["mean_ms"],
            "runs": result["runs"]}


# The instruction-set features that change int8 results or speed: AVX2 / AVX-512 run U8S8 products with
# VPMADDUBSW (saturating int16 pair sums) unless VNNI is present; ARM dot-product / i8mm are the Pi 5's.
ISA_FLAGS = ("sse4_1", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
             "asimd", "asimddp", "i8mm")
VNNI = ("avx512_vnni", "avx_vnni")


def host_isa() -> HostIsa:
    """This machine's int8-relevant instruction-set features, as the manifest records them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return {"machine": platform.machine(), "flags": [f for f in ISA_FLAGS if f in flags],
            "int8_dot_product": "vnni" if flags & set(VNNI) else ("none (VPMADDUBSW)" if x86 else "arm")}


def host_cpu() -> str:
    """The CPU model name of this machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads_for(recipe: Recipe, target: Target) -> int:
    """--threads, else the target's default thread count capped at this host's cores (more only
    oversubscribes): every host measurement of a build uses this."""
    return recipe.threads or max(1, min(target.default_threads, os.cpu_count() or 1))


ROUNDS = 7  # every host p50 of a build (the candidate rows, latency.host, the pruning gain): interleaved rounds
ROUND_MS = 25.0        # each round times every candidate for about this long (at least min_runs runs)
MAX_RUNS_PER_ROUND = 500
ROUNDS_STATISTIC = f"median of {ROUNDS} interleaved round p50s"


def side_by_side(models: list[Model], dataset: Dataset, runs: int, rounds: int = ROUNDS) -> list[HostLatency]:
    """Host latency of each model made as the candidate table's rows are (interleaved_feeds): in `rounds`
    rounds every model runs in turn for about ROUND_MS (at least runs / rounds runs), and its p50 is the median
    of its round p50s; first inference and init are round 1's, p90 / p99 / mean the median round's. Drift on a
    shared host hits every model alike, and one burst of load does not decide a ratio. `how` says so."""
    least = max(1, runs // rounds)
    per_round = [_round_runs(m, m.raw_feeds([dataset.inputs[i.name] for i in m.inputs]), least) for m in models]
    timed = [[host_latency(m, dataset, n, warmup=0) for m, n in zip(models, per_round, strict=True)]
             for _ in range(rounds)]
    results = []
    for k, (model, n) in enumerate(zip(models, per_round, strict=True)):
        ranked = sorted((r[k] for r in timed), key=lambda lat: lat["p50_ms"])
        how = provenance("host", f"p50: {ROUNDS_STATISTIC} (as the candidate rows); init, first: round 1; p90, "
                         "p99, mean: the median round", runs=n * rounds, rounds=rounds, threads=model.threads,
                         samples=1, data="the first compiled batch of the golden samples")
        median: HostLatency = {**ranked[rounds // 2], "init_ms": timed[0][k]["init_ms"],
                               "first_ms": timed[0][k]["first_ms"], "runs": n * rounds, "how": how}
        results.append(median)
    return results


def _round_runs(model: Model, feed: list[np.ndarray], least: int) -> int:
    """How many runs fill one round of about ROUND_MS (at least `least`), after five warm-up runs (the first
    runs allocate and pack weights)."""
    warm = [_timed(model, feed) for _ in range(5)]
    return int(np.clip(ROUND_MS / max(min(warm), 1e-3), least, MAX_RUNS_PER_ROUND))


def interleaved_latency(models: Mapping[str, Model], sample: Dataset, min_runs: int,
                        rounds: int) -> dict[str, RoundTiming]:
    """p50 of every model on the first sample of `sample`, timed round by round (interleaved_feeds)."""
    feeds = {name: [_raw(sample, m, info) for info in m.inputs] for name, m in models.items()}
    return interleaved_feeds(models, feeds, min_runs, rounds)


def interleaved_feeds(models: Mapping[str, Model], feeds: Mapping[str, list[np.ndarray]], min_runs: int,
                      rounds: int) -> dict[str, RoundTiming]:
    """p50 of every model on its raw feeds, timed round by round in turn so that a shared host's drift hits
    all alike.

    In each round every model runs for about ROUND_MS (at least `min_runs` invocations); a model's p50 is
    the median of its round p50s, so one burst of load from another process does not decide a choice.
    """
    runs = {name: _round_runs(model, feeds[name], min_runs) for name, model in models.items()}
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


def _raw(sample: Dataset, model: Model, info: TensorInfo) -> np.ndarray:
    from edgekiln.runtime.model import quantize, to_compiled

    return quantize(to_compiled(sample.inputs[info.name][:1], model.layouts.get(info.name)), info)
