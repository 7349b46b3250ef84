"""Interpreter backends: the only code in the runtime that knows an interpreter's API.

A backend runs the model exactly as compiled (raw dtypes, compiled batch size). Models are
always created from bytes the caller has already checksummed, never re-read from disk.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output as the interpreter sees it.

    shape: compiled shape; -1 marks a dimension the model accepts at any size.
    scale / zero_point: affine quantization (real = scale * (q - zero_point)); scale 0 = not quantized.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Redirect fd 2 (below Python) for a block; errors still arrive as exceptions."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def tflite_interpreter_class() -> tuple[Any, str, str]:
    """(Interpreter class, package name, version): LiteRT, then tflite-runtime, then TensorFlow.

    TensorFlow is the last resort: it takes seconds to import and is not meant for devices.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert", _package_version("ai-edge-litert")
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime", _package_version("tflite-runtime")
    except ImportError:
        pass
    import tensorflow as tf  # noqa: PLC0415  (only when no interpreter package is installed)

    return tf.lite.Interpreter, "tensorflow", tf.__version__


class TFLiteBackend:
    """A .tflite model in LiteRT (or a fallback interpreter), addressed by signature names."""

    format = "tflite"

    def __init__(self, model_bytes: bytes, threads: int | None) -> None:
        interpreter_class, self.name, self.version = tflite_interpreter_class()
        with _stderr_silenced():  # LiteRT's C++ prints an INFO line when it applies XNNPACK
            self._interp = interpreter_class(model_content=model_bytes, num_threads=threads)
            self._interp.allocate_tensors()
        in_details, out_details = self._io_details()
        self.inputs = [_tflite_info(name, d) for name, d in in_details]
        self.outputs = [_tflite_info(name, d) for name, d in out_details]
        self._in_index = [d["index"] for _, d in in_details]
        self._out_index = [d["index"] for _, d in out_details]
        self._shapes = {d["index"]: tuple(int(n) for n in d["shape"]) for _, d in in_details}  # as allocated

    def _io_details(self) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        """Inputs and outputs in signature order with signature names (they match the source model)."""
        signatures = self._interp.get_signature_list()
        if len(signatures) == 1:
            key, io = next(iter(signatures.items()))
            runner = self._interp.get_signature_runner(key)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            return [(n, ins[n]) for n in io["inputs"]], [(n, outs[n]) for n in io["outputs"]]
        return ([(d["name"], d) for d in self._interp.get_input_details()],
                [(d["name"], d) for d in self._interp.get_output_details()])

    def run(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        """One invocation on raw arrays, in input order; outputs in output order. Arrays of another size along an
        axis the model leaves open (-1) resize the tensors first (strict: a fixed axis still refuses)."""
        if any(self._shapes[i] != a.shape for i, a in zip(self._in_index, feed, strict=True)):
            for index, array in zip(self._in_index, feed, strict=True):
                self._interp.resize_tensor_input(index, array.shape, strict=True)
            self._interp.allocate_tensors()
            self._shapes = {i: a.shape for i, a in zip(self._in_index, feed, strict=True)}
        for index, array in zip(self._in_index, feed, strict=True):
            self._interp.set_tensor(index, array)
        self._interp.invoke()
        return [self._interp.get_tensor(index) for index in self._out_index]

    def op_names(self) -> list[str]:
        """The builtin op of every node, in execution order."""
        return [op["op_name"] for op in self._interp._get_ops_details()]  # noqa: SLF001


def _tflite_info(name: str, detail: dict) -> TensorInfo:
    shape = detail.get("shape_signature", detail["shape"])
    scale, zero_point = detail["quantization"]
    return TensorInfo(name, tuple(int(s) for s in shape), np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


REWRITE_CLASH = "Attempt to replace the existing tensor"  # onnxruntime 1.32, see onnx_session


def onnx_session(ort: Any, model_bytes: bytes, options: Any) -> Any:
    """A CPU InferenceSession. onnxruntime 1.32's AVX2 S8->U8 weight rewrite (x64quantprecision) adds one
    initializer twice on some QDQ graphs (tf2onnx transformer encoders); there it opens at basic level: QDQ pairs
    unfused, float arithmetic on the int8 values, the same numbers on every CPU, only slower."""
    severity, options.log_severity_level = options.log_severity_level, 4  # the exception says it; no log too
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (onnxruntime's Fail has no public base class)
        if REWRITE_CLASH not in str(exc) or int(options.graph_optimization_level) <= 1:  # 1: already basic
            raise
    finally:
        options.log_severity_level = severity
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """An .onnx model in onnxruntime's CPU execution provider."""

    format = "onnx"

    def __init__(self, model_bytes: bytes, threads: int | None, profile_prefix: str | None = None) -> None:
        import onnxruntime as ort

        self.name, self.version = "onnxruntime", ort.__version__
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Exact U8U8 kernels on x86 without VNNI (U8S8's VPMADDUBSW pair sums saturate: outputs drift whole steps),
        # so a bundle validates on every CPU; MatMulNBits (what DQ -> float MatMul becomes: 16x8, a node kept
        # float) in float32: by default it quantizes its input to int8 per block, undoing 16-bit activations.
        options.add_session_config_entry("session.x64quantprecision", "1")
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if profile_prefix:  # onnxruntime's own per-node timer (runtime/profile.py reads its trace)
            options.enable_profiling, options.profile_file_prefix = True, profile_prefix
        self._session = onnx_session(ort, model_bytes, options)
        self.inputs = [_onnx_info(i) for i in self._session.get_inputs()]
        self.outputs = [_onnx_info(o) for o in self._session.get_outputs()]

    def run(self, feed: list[np.ndarray]) -> list[np.ndarray]:
        named = {info.name: array for info, array in zip(self.inputs, feed, strict=True)}
        return list(self._session.run(None, named))

    def end_profiling(self) -> str:
        return self._session.end_profiling()

    def op_names(self) -> list[str]:
        return []  # onnxruntime does not expose its executed graph; the compiler reads the ONNX file


_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
                "tensor(uint8)": "uint8", "tensor(int64)": "int64", "tensor(int32)": "int32"}


def _onnx_info(node: Any) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorInfo(node.name, shape, _ONNX_DTYPES.get(node.type, node.type))


BACKENDS: dict[str, type[TFLiteBackend] | type[OnnxBackend]] = {"tflite": TFLiteBackend, "onnx": OnnxBackend}


def open_backend(model_format: str, model_bytes: bytes, threads: int | None) -> TFLiteBackend | OnnxBackend:
    """The backend for a model format ('tflite' or 'onnx')."""
    if model_format not in BACKENDS:
        raise ValueError(f"unknown model format '{model_format}' (expected one of {sorted(BACKENDS)})")
    return BACKENDS[model_format](model_bytes, threads)
