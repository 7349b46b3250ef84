"""`python -m runtime race FILE... --runs N --threads T --json`: time models side by side, round by round.

Each round runs every model in turn, at least `runs` timed inferences and `round_ms`, on zero inputs;
a model's p50 is the median of its round p50s: a slow spell of the device hits every model alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from .model import Model


def race(files: list[Path], runs: int, rounds: int, threads: int | None, round_ms: float = 25.0) -> dict:
    models = {f.name: Model(f.suffix.lstrip("."), f.read_bytes(), threads) for f in files}
    feeds = {name: m.raw_feeds(None) for name, m in models.items()}  # zeros in each model's compiled input types
    for name, m in models.items():  # warm up: first inferences allocate
        m.backend.run(feeds[name])
    medians: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, m in models.items():
            times: list[float] = []
            while len(times) < runs or sum(times) < round_ms:
                start = time.perf_counter()
                m.backend.run(feeds[name])
                times.append((time.perf_counter() - start) * 1e3)
            medians[name].append(float(np.median(times)))
    backend = next(iter(models.values())).backend
    return {"p50_ms": {n: round(float(np.median(v)), 4) for n, v in medians.items()}, "runs": runs,
            "round_ms": round_ms,
            "rounds": rounds, "threads": threads, "runtime": backend.name, "runtime_version": backend.version,
            "machine": platform.machine()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime race")
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--round-ms", type=float, default=25.0, help="time each model at least this per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = race(args.files, max(args.runs, 1), max(args.rounds, 1), args.threads, args.round_ms)
    print(json.dumps(result) if args.json else "\n".join(f"{n}: p50 {v} ms" for n, v in result["p50_ms"].items()))
    return 0
