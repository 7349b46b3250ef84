"""Per-op profile of a compiled model: measured host time (runtime/profile.py, the code that ships) joined
with each op's static facts and its estimated time on the target.

The JSON shape (`edgekiln profile --json`, the manifest's `profile` block keeps the top rows):
{"model", "method", "threads", "total_ms" (measured whole), "sum_ms", "agreement", "ops": [{"name", "op",
"layer", "ms", "share", "macs", "params", "weight_bytes", "dtype", "fast_path", "estimate_ms", "hot"}]}.
`hot`: among the slowest ops that together take 80 % of the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgekiln.compiler.manifest_schema import provenance
from edgekiln.compiler.profile.static import OpFacts, onnx_facts, onnx_match, tflite_facts

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import Agreement, Manifest, Profile, ProfileEstimate, ProfileOp

HOT_SHARE = 0.8
AGREEMENT = 0.2  # sum of the ops vs the whole: within +-20 % counts as adding up
METHOD_STATISTIC = {  # runtime/profile.py's methods: how each op's time and the whole's are made
    "prefix-differences": "each op: the fastest round's time of the model cut after it minus the one cut before "
                          "(running minimum); whole: the fastest round",
    "onnxruntime-profiler": "each op: the fastest round's kernel_time of onnxruntime's profiler; whole: the "
                            "fastest round without the profiler",
}


def profile_model(model_format: str, model_bytes: bytes, threads: int, sample: list[np.ndarray] | None,
                  target: Any = None, layouts: dict | None = None, layer_names: list[str] | None = None,
                  runs: int = 30, name: str = "model") -> Profile:
    """The full profile (every op, sorted by measured time) of one compiled model on this host."""
    from edgekiln.runtime.model import Model

    measured = Model(model_format, model_bytes, threads, layouts).profile(sample, runs)
    return joined(measured, model_format, model_bytes, target, layer_names or [], name)


def joined(measured: Mapping[str, Any], model_format: str, model_bytes: bytes, target: Any, layer_names: list[str],
           name: str) -> Profile:
    """A runtime profile (rows: index, name, op, ms, share) with the static columns and the estimate added."""
    rows = [cast("ProfileOp", dict(op)) for op in measured["ops"]]  # runtime/profile.py's rows
    if model_format == "tflite":
        facts: list[OpFacts | None] = list(tflite_facts(model_bytes, layer_names))
        matched = [facts[row["index"]] if row["index"] < len(facts) else None for row in rows]
    else:
        by_name = onnx_facts(model_bytes)
        matched = [onnx_match(row["name"], by_name) for row in rows]
    estimates = _estimates(matched, target, measured.get("threads") or 1)
    for row, fact, estimate in zip(rows, matched, estimates, strict=True):
        row.update({"layer": fact.layer if fact else row["name"], "macs": fact.macs if fact else None,
                    "params": fact.params if fact else 0, "weight_bytes": fact.weight_bytes if fact else 0,
                    "dtype": fact.dtype if fact else "", "estimate_ms": estimate,
                    "fast_path": row.get("fast_path", fact.fast_path if fact else None)})
    rows.sort(key=lambda r: -r["ms"])
    _mark_hot(rows)
    total, whole = measured["sum_ms"], measured["total_ms"]
    return {"model": name, "format": model_format, "method": measured["method"], "threads": measured["threads"],
            "total_ms": whole, "sum_ms": total, "agreement": agreement(total, whole), "runs": measured["runs"],
            "profile_s": measured["profile_s"], "estimate": _estimate_label(target, estimates), "ops": rows,
            "how": provenance("host", METHOD_STATISTIC.get(measured["method"], str(measured["method"])),
                              runs=measured["runs"], rounds=measured["runs"], threads=measured["threads"], samples=1,
                              data="one compiled batch")}


def on_device(measured: Profile, bundle: Path, manifest: Manifest) -> Profile:
    """A profile measured on a device (`python -m runtime profile --json`) with the static columns added (read
    from the bundle's model here) and the target's estimate beside the device's own times."""
    from edgekiln import targets

    model = manifest["model"]
    name = str(manifest["target"]["name"])
    target = targets.load(name) if name in targets.names() else None
    device = joined(measured, model["format"], (bundle / model["file"]).read_bytes(), target, [], model["file"])
    return {**device, "measured_on": "device", "machine": measured.get("machine"),
            "how": {**device["how"], "where": "device"}}


def agreement(sum_ms: float, whole_ms: float) -> Agreement:
    """sum / whole and whether it is within the bound."""
    ratio = sum_ms / whole_ms if whole_ms > 0 else 0.0
    return {"ratio": round(ratio, 3), "within": abs(ratio - 1) <= AGREEMENT, "bound": AGREEMENT}


def block(profile: Profile, top: int = 10) -> Profile:
    """The manifest's `profile` block: method, sum vs whole, the top rows."""
    ops = profile["ops"]
    return {"method": profile["method"], "threads": profile["threads"], "total_ms": profile["total_ms"],
            "sum_ms": profile["sum_ms"], "agreement": profile["agreement"], "runs": profile["runs"],
            "profile_s": profile["profile_s"], "estimate": profile["estimate"], "ops_total": len(ops),
            "ops": ops[:top]}


def _mark_hot(rows: list[ProfileOp]) -> None:
    total, running = sum(r["ms"] for r in rows), 0.0
    for row in rows:  # sorted slowest first: an op is hot while the ones before it take < 80 %
        row["hot"] = total > 0 and running < HOT_SHARE * total
        running += row["ms"]


def _estimates(facts: list[OpFacts | None], target: Any, threads: int) -> list[float | None]:
    """Each op's estimated time on the target (the cost model per op); None without figures or records."""
    figures = getattr(target, "estimate", None)
    if figures is None or not any(f and f.record for f in facts):
        return [None] * len(facts)
    from edgekiln.compiler.device.estimate import per_op_ms

    known = [f for f in facts if f and f.record]
    # an op off the fast path (fast_path False) runs on the built-in kernels on the device too
    per_op = iter(per_op_ms([f.record for f in known if f.record], figures, target.default_threads,
                            [f.fast_path is False for f in known]))
    return [round(next(per_op), 5) if f and f.record else None for f in facts]


def _estimate_label(target: Any, estimates: list[float | None]) -> ProfileEstimate | None:
    if target is None or all(e is None for e in estimates):
        return None
    return {"method": "estimate", "target": target.name, "threads": target.default_threads,
            "sum_ms": round(sum(e for e in estimates if e is not None), 4)}
