"""Per-op time, measured. onnxruntime: its session profiler (each node's kernel_time). LiteRT's Python wheel has no
profiler: an op's time is prefix k minus prefix k-1 (models cut after k ops, the tensors live at the cut their
outputs), each the fastest of rounds timing every prefix and the whole model in turn. The differences add up to
the full prefix minus the empty one; that this matches the whole model checks that cutting kept the timing."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from .backends import OnnxBackend, TFLiteBackend, tflite_interpreter_class


def profile(model_format: str, model_bytes: bytes, threads: int | None, feeds: list, runs: int = 30) -> dict:
    """{method, threads, total_ms (the whole), sum_ms, runs, profile_s, ops: [{index, name, op, ms, share}]}."""
    start = time.perf_counter()
    method, ops, whole, rounds = (_onnx if model_format == "onnx" else _tflite)(model_bytes, threads, feeds, runs)
    total = sum(op["ms"] for op in ops)
    for op in ops:
        op.update(ms=round(op["ms"], 5), share=round(op["ms"] / total, 4) if total > 0 else 0.0)
    return {"method": method, "threads": threads, "total_ms": round(whole, 4), "sum_ms": round(total, 4),
            "runs": rounds, "profile_s": round(time.perf_counter() - start, 2), "ops": ops}


def _tflite(model_bytes: bytes, threads: int | None, feeds: list, runs: int) -> tuple[str, list, float, int]:
    try:  # the TFLite schema ships only in ai-edge-litert (tflite-runtime, 32-bit Pi OS, has none): one line
        import flatbuffers
        from ai_edge_litert import schema_py_generated as fb
    except ImportError as exc:
        raise ImportError(f"profiling a .tflite model needs {exc.name}: pip install ai-edge-litert flatbuffers "
                          "(no 32-bit ARM wheel: profile on a 64-bit OS)") from None
    model, whole, calls = fb.ModelT.InitFromPackedBuf(model_bytes, 0), TFLiteBackend(model_bytes, threads), []
    graph, model.signatureDefs = model.subgraphs[0], None  # a prefix's outputs are not the signature's
    ops, ends = list(graph.operators), {int(t) for t in graph.outputs}
    builder = flatbuffers.Builder(len(model_bytes) + 4096)  # one for every prefix, each table packed into it once:
    for table in (*model.buffers, *model.operatorCodes, *graph.tensors, *ops):  # a prefix adds its op list
        table.Pack = functools.cache(table.Pack)  # (packing all weights per prefix took minutes for 300 ops)
    for k in range(len(ops) + 1):
        later = {int(t) for op in ops[k:] for t in op.inputs} | ends
        graph.operators = ops[:k]
        graph.outputs = [int(t) for op in ops[:k] for t in op.outputs if t in later] or list(graph.inputs)
        builder.finished = False  # the prefix's tables follow the shared ones; its Output() holds them all
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        interp = tflite_interpreter_class()[0](model_content=bytes(builder.Output()), num_threads=threads)
        interp.allocate_tensors()
        for detail, x in zip(interp.get_input_details(), feeds, strict=True):
            interp.set_tensor(detail["index"], x)
        calls.append(interp.invoke)
    times = _rounds([*calls, lambda: whole.run(feeds)], runs)
    fastest = times.min(axis=0)  # a longer prefix cannot take less time: a lower later figure caps earlier ones
    steps = np.diff(np.minimum.accumulate(fastest[-2::-1])[::-1])
    codes = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    rows = [{"index": k, "name": graph.tensors[int(op.outputs[0])].name.decode(), "ms": float(step),
             "op": codes.get(max(model.operatorCodes[op.opcodeIndex].builtinCode,
                                 model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode), "CUSTOM")}
            for k, (op, step) in enumerate(zip(ops, steps, strict=True))]
    return "prefix-differences", rows, float(fastest[-1]), len(times)


def _rounds(calls: list[Callable], runs: int, batches: int = 4) -> np.ndarray:
    """ms of each call in each round (each call warmed once, then timed, in turn). Rounds come in batches of
    `runs` until a batch no longer lowers the fastest figures by 3 % of their sum (a loaded CPU needs more)."""
    times = np.array([[_timed(call) for call in calls] for _ in range(runs)])
    for _ in range(batches - 1):
        fastest, times = times.min(axis=0), np.vstack([times, [[_timed(call) for call in calls] for _ in range(runs)]])
        if (fastest - times.min(axis=0)).sum() < 0.03 * times.min(axis=0).sum():
            break
    return times


def _timed(call: Callable) -> float:
    call()
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def _onnx(model_bytes: bytes, threads: int | None, feeds: list, runs: int) -> tuple[str, list, float, int]:
    with tempfile.TemporaryDirectory() as scratch:
        profiled = OnnxBackend(model_bytes, threads, profile_prefix=os.path.join(scratch, "ort"))
        plain = OnnxBackend(model_bytes, threads)
        whole = _rounds([lambda: profiled.run(feeds), lambda: plain.run(feeds)], runs)[:, 1]
        with open(profiled.end_profiling()) as trace:
            events = [e for e in json.load(trace) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    rows: dict[str, dict] = {}
    for e in events:
        args, name = e["args"], e["name"][: -len("_kernel_time")]
        rows.setdefault(name, {"index": len(rows), "name": name, "op": args["op_name"], "times": [],
                               "fast_path": f"{args['op_name']} ({args.get('provider')})"})["times"].append(e["dur"])
    return "onnxruntime-profiler", [dict(r, ms=float(np.min(r.pop("times"))) / 1e3) for r in rows.values()], \
        float(np.min(whole)), len(whole)
