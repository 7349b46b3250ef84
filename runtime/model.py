"""A compiled model with a float interface: predict, benchmark, and (for bundles) validate."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import TensorInfo, open_backend

ArrayOrDict = np.ndarray | dict[str, np.ndarray]


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float -> the tensor's dtype, applying its scale / zero point when it has one."""
    dtype = np.dtype(info.dtype)
    if info.scale == 0.0 or dtype.kind == "f":
        return np.asarray(x, dtype=dtype)
    limits = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / info.scale) + info.zero_point
    return np.clip(q, limits.min, limits.max).astype(dtype)


def dequantize(q: np.ndarray, info: TensorInfo) -> np.ndarray:
    """The tensor's dtype -> float32."""
    if info.scale == 0.0 or q.dtype.kind == "f":
        return q.astype(np.float32, copy=False)
    return ((q.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)


def to_compiled(x: np.ndarray, layout: dict | None) -> np.ndarray:
    """User (source) layout -> the compiled model's layout: compiled = source.transpose(perm)."""
    return x if layout is None else np.ascontiguousarray(np.transpose(x, layout["perm"]))


def to_source(y: np.ndarray, layout: dict | None) -> np.ndarray:
    """The compiled model's layout -> the user's (source) layout."""
    return y if layout is None else np.ascontiguousarray(np.transpose(y, np.argsort(layout["perm"])))


class Model:
    """One model in one interpreter. `predict` takes and returns float arrays with a batch axis.

    layouts: tensor name -> {"perm": [...], ...} for inputs/outputs whose layout the converter
    changed (e.g. NCHW -> NHWC by onnx2tf); predict and benchmark take and return the source layout.
    """

    def __init__(self, model_format: str, model_bytes: bytes, threads: int | None = None,
                 layouts: dict[str, Any] | None = None) -> None:
        start = time.perf_counter()
        self.backend = open_backend(model_format, model_bytes, threads)
        self.init_ms = (time.perf_counter() - start) * 1e3
        self.format, self.threads, self.model_bytes = model_format, threads, model_bytes
        self.inputs: list[TensorInfo] = self.backend.inputs
        self.outputs: list[TensorInfo] = self.backend.outputs
        self.layouts = dict(layouts or {})

    def predict(self, x: ArrayOrDict) -> ArrayOrDict:
        """Float in, float out. One array for a single-input/-output model, else dicts by name."""
        feeds = self._as_list(x)
        outputs = self.predict_list(feeds)
        if len(outputs) == 1:
            return outputs[0]
        return {info.name: out for info, out in zip(self.outputs, outputs, strict=True)}

    def predict_list(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Float arrays in input order -> float arrays in output order, any batch size."""
        raw = self.run_raw([quantize(to_compiled(f, self.layouts.get(info.name)), info)
                            for f, info in zip(feeds, self.inputs, strict=True)])
        return [to_source(dequantize(r, info), self.layouts.get(info.name))
                for r, info in zip(raw, self.outputs, strict=True)]

    def run_raw(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Raw (possibly int8) arrays, any batch: run in chunks of the compiled batch, the last one
        padded with copies of its last sample (whose outputs are dropped)."""
        batch = feeds[0].shape[0]
        compiled = self.inputs[0].shape[0] if self.inputs[0].shape else -1
        # onnxruntime takes any size along a symbolic batch axis; TFLite is allocated for one size.
        if compiled == batch or (compiled == -1 and (batch == 1 or self.format == "onnx")):
            return self.backend.run(feeds)
        step = max(compiled, 1)
        chunks = []
        for start in range(0, batch, step):
            part = [f[start : start + step] for f in feeds]
            real = part[0].shape[0]
            part = [np.concatenate([p, np.repeat(p[-1:], step - real, axis=0)]) for p in part]
            chunks.append([out[:real] for out in self.backend.run(part)])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def _as_list(self, x: ArrayOrDict) -> list[np.ndarray]:
        if isinstance(x, dict):
            missing = [info.name for info in self.inputs if info.name not in x]
            if missing:
                raise KeyError(f"missing inputs {missing}; the model takes {[i.name for i in self.inputs]}")
            return [np.asarray(x[info.name]) for info in self.inputs]
        if len(self.inputs) != 1:
            raise TypeError(f"the model has {len(self.inputs)} inputs: pass a dict name -> array")
        return [np.asarray(x)]

    def raw_feeds(self, sample: list[np.ndarray] | None) -> list[np.ndarray]:
        """One compiled batch of raw inputs from a float sample (zeros without one)."""
        size = max(self.inputs[0].shape[0], 1) if self.inputs[0].shape else 1
        return [quantize(to_compiled(np.resize(s[:size], (size, *s.shape[1:])), self.layouts.get(i.name)), i)
                for s, i in zip(sample, self.inputs, strict=True)] if sample else \
            [np.zeros([d if d > 0 else 1 for d in i.shape], np.dtype(i.dtype)) for i in self.inputs]

    def profile(self, sample: list[np.ndarray] | None = None, runs: int = 30) -> dict:
        """Per-op time of the compiled model, adding up to the whole (runtime/profile.py)."""
        from .profile import profile

        return profile(self.format, self.model_bytes, self.threads, self.raw_feeds(sample), runs)

    def benchmark(self, sample: list[np.ndarray] | None = None, runs: int = 50, warmup: int = 5) -> dict:
        """First-inference and steady-state latency of one compiled batch (raw, no pre/post)."""
        feeds = self.raw_feeds(sample)
        start = time.perf_counter()
        self.backend.run(feeds)
        first_ms = (time.perf_counter() - start) * 1e3
        for _ in range(warmup):
            self.backend.run(feeds)
        times = np.empty(runs)
        for k in range(runs):
            start = time.perf_counter()
            self.backend.run(feeds)
            times[k] = (time.perf_counter() - start) * 1e3
        p50, p90, p99 = np.percentile(times, [50, 90, 99])
        return {"runtime": self.backend.name, "runtime_version": self.backend.version,
                "threads": self.threads, "init_ms": round(self.init_ms, 3), "first_ms": round(first_ms, 3),
                "p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4),
                "p99_ms": round(float(p99), 4), "mean_ms": round(float(times.mean()), 4), "runs": runs,
                "peak_rss_mb": round(peak_rss_mb(), 1)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class SampleResult:
    """How one golden sample compared."""

    index: int
    passed: bool
    max_abs_diff: float


@dataclass
class ValidationReport:
    """The outcome of running the golden inputs through the bundle.

    Attributes:
        samples: how each golden sample compared; atol, rtol: the tolerance, |got - expected| <= atol + rtol*|expected|.
    """

    samples: list[SampleResult] = field(default_factory=list)
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def passed(self) -> bool:
        """Every sample within the tolerance (and at least one sample)."""
        return bool(self.samples) and all(s.passed for s in self.samples)

    @property
    def max_abs_diff(self) -> float:
        """The largest |got - expected| over every sample and output."""
        return max((s.max_abs_diff for s in self.samples), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "max_abs_diff": self.max_abs_diff, "atol": self.atol,
                "rtol": self.rtol, "samples": [vars(s) for s in self.samples]}


def compare_golden(model: Model, golden: dict[str, np.ndarray], atol: float, rtol: float) -> ValidationReport:
    """Run golden inputs one sample at a time and compare every output within atol + rtol*|expected|."""
    ins = [golden[f"input_{k}"] for k in range(len(model.inputs))]
    expected = [golden[f"output_{k}"] for k in range(len(model.outputs))]
    report = ValidationReport(atol=atol, rtol=rtol)
    for i in range(ins[0].shape[0]):
        got = model.predict_list([x[i : i + 1] for x in ins])
        diffs = [np.abs(g - e[i : i + 1]) for g, e in zip(got, expected, strict=True)]
        ok = all(bool(np.all(d <= atol + rtol * np.abs(e[i : i + 1])))
                 for d, e in zip(diffs, expected, strict=True))
        report.samples.append(SampleResult(i, ok, float(max(d.max() for d in diffs))))
    return report
