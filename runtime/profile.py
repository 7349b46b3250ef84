"""Per-op time, measured. onnxruntime: its session profiler (each node's kernel_time). LiteRT's Python wheel has no
profiler: an op's time is prefix k minus prefix k-1 (models cut after k ops, the tensors live at the cut their
outputs), each the fastest of rounds timing every prefix and the whole model in turn. A model of more than BLOCK
ops is cut into blocks of BLOCK ops, each a model of its own fed the tensors the whole model computes at its
start, and prefixed within: a round then runs each op at most BLOCK times, not once per later op. The differences
add up to the sum of the full blocks minus the empty ones; that this matches the whole model checks that cutting
kept the timing."""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

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


BLOCK = 32  # ops per cut model: a model is timed in blocks of 32 ops, so a round runs each op at most 32 times


def _tflite(model_bytes: bytes, threads: int | None, feeds: list, runs: int) -> tuple[str, list, float, int]:
    try:  # the TFLite schema ships only in ai-edge-litert (tflite-runtime, 32-bit Pi OS, has none): one line
        import flatbuffers
        from ai_edge_litert import schema_py_generated as fb
    except ImportError as exc:
        raise ImportError(f"profiling a .tflite model needs {exc.name}: pip install ai-edge-litert flatbuffers "
                          "(no 32-bit ARM wheel: profile on a 64-bit OS)") from None
    model, whole = fb.ModelT.InitFromPackedBuf(model_bytes, 0), TFLiteBackend(model_bytes, threads)
    graph = model.subgraphs[0]
    ops, block = list(graph.operators), BLOCK if len(model.subgraphs) == 1 else len(graph.operators)  # a call
    last_use = {int(t): k for k, op in enumerate(ops) for t in op.inputs} | {int(t): len(ops) for t in graph.outputs}
    values = dict(zip((int(t) for t in graph.inputs), feeds, strict=True))  # of a subgraph: one block
    if len(ops) > block:  # later blocks start from the tensors live there, as the whole model computes them
        values |= _all_tensors(model_bytes, feeds, {int(t) for op in ops[block:] for t in op.inputs if t >= 0})
    for table in (*model.buffers, *model.operatorCodes):  # packed once per block's builder (minutes to seconds)
        table.Pack = functools.cache(table.Pack)
    calls = [call for start in range(0, len(ops), block)
             for call in _block_prefixes(fb, flatbuffers, model, (start, ops[start:start + block]), last_use, values,
                                         threads)]
    times = _rounds([*calls, lambda: whole.run(feeds)], runs)
    fastest = times.min(axis=0)  # a longer prefix cannot take less time: a lower later figure caps earlier ones
    steps = [step for i in range(0, len(calls), block + 1)  # each block's prefixes: its ops' steps
             for step in np.diff(np.minimum.accumulate(fastest[:-1][i:i + block + 1][::-1])[::-1])]
    codes = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    rows = [{"index": k, "name": graph.tensors[int(op.outputs[0])].name.decode(), "ms": float(step),
             "op": codes.get(max(model.operatorCodes[op.opcodeIndex].builtinCode,
                                 model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode), "CUSTOM")}
            for k, (op, step) in enumerate(zip(ops, steps, strict=True))]
    return "prefix-differences", rows, float(fastest[-1]), len(times)


def _block_prefixes(fb: Any, flatbuffers: Any, model: Any, block: tuple[int, list], last_use: dict[int, int],
                    values: dict, threads: int | None) -> list[Callable]:
    """An invoke per prefix of a block (0 to all of its ops) in a model of the block's own tensors and weights:
    inputs the tensors it reads and makes none of, outputs those live at the cut."""
    (start, ops), graph, cut, sub = block, model.subgraphs[0], fb.ModelT(), fb.SubGraphT()
    used = sorted({int(t) for op in ops for t in (*op.inputs, *op.outputs, *(
        [] if op.intermediates is None else op.intermediates)) if t >= 0})
    index, sub.tensors = {t: i for i, t in enumerate(used)}, [copy.copy(graph.tensors[t]) for t in used]
    cut.version, cut.operatorCodes, cut.subgraphs = model.version, model.operatorCodes, [sub]
    cut.buffers = [model.buffers[0]]
    for tensor in sub.tensors:  # a weight keeps its data; a computed tensor gets the empty buffer 0
        data = model.buffers[tensor.buffer].data
        cut.buffers += [model.buffers[tensor.buffer]] if data is not None and len(data) else []
        tensor.buffer = len(cut.buffers) - 1 if data is not None and len(data) else 0
    made = {int(t) for op in ops for t in op.outputs}
    sub.inputs = [index[t] for t in used if t not in made and not sub.tensors[index[t]].buffer]
    cut_ops = [copy.copy(op) for op in ops]
    for op in cut_ops:
        op.inputs, op.outputs = [index.get(int(t), -1) for t in op.inputs], [index[int(t)] for t in op.outputs]
        op.intermediates = None if op.intermediates is None else [index[int(t)] for t in op.intermediates]
    for table in (*sub.tensors, *cut_ops):
        table.Pack = functools.cache(table.Pack)
    builder, calls = flatbuffers.Builder(1024), []  # one for the block: its tables packed once, each prefix's added
    for k in range(len(ops) + 1):
        live = [t for op in ops[:k] for t in map(int, op.outputs) if last_use.get(t, -1) >= start + k]
        sub.operators, sub.outputs = cut_ops[:k], [index[t] for t in live] or sub.inputs
        builder.finished = False  # the prefix's tables follow the shared ones; its Output() holds them all
        builder.Finish(cut.Pack(builder), file_identifier=b"TFL3")
        interp = tflite_interpreter_class()[0](model_content=bytes(builder.Output()), num_threads=threads)
        interp.allocate_tensors()
        for detail, t in zip(interp.get_input_details(), (used[i] for i in sub.inputs), strict=True):
            interp.set_tensor(detail["index"], values[t])
        calls.append(interp.invoke)
    return calls


def _all_tensors(model_bytes: bytes, feeds: list, wanted: set[int]) -> dict[int, np.ndarray]:
    """The `wanted` tensors of the first subgraph after one run on `feeds` (no XNNPACK: it keeps none of its own)."""
    interpreter_class = tflite_interpreter_class()[0]
    resolver = sys.modules[interpreter_class.__module__].OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = interpreter_class(model_content=model_bytes, experimental_preserve_all_tensors=True,
                               experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    for detail, x in zip(interp.get_input_details(), feeds, strict=True):
        interp.set_tensor(detail["index"], x)
    interp.invoke()
    return {t: interp.get_tensor(t) for t in wanted}


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
