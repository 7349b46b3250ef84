"""ONNX (NCHW, PyTorch-style) -> .tflite through onnx2tf, calibrated on OUR data, offline.

onnx2tf runs in a subprocess inside a scratch directory: its console output is captured (and
kept for the error message), its global RNG seeding and TensorFlow state stay out of the build,
and its working directory holds a stand-in for the sample file it would otherwise try to
download (FACTS.md). A dead proxy in its environment makes any other download attempt fail
at once. Of its many output files only the artifact and the float32 baseline are kept.

onnx2tf turns channels-first inputs into channels-last; the layouts are found by comparing shapes
and checked numerically against the ONNX model, then recorded so that the runtime accepts and
returns the ONNX layout (see runtime/model.py).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.emit.tflite_names import rename_signature
from edgekiln.compiler.errors import ConversionError, first_line
from edgekiln.compiler.manifest_schema import Layout
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.graph.onnx_graph import OnnxGraph

TIMEOUT_S = 1800
STAND_IN = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf's download target
ARTIFACT = {  # (quantize, int8 I/O) -> the onnx2tf output file suffix
    (Quantize.none, True): "float32", (Quantize.none, False): "float32",
    (Quantize.float16, True): "float16", (Quantize.float16, False): "float16",
    (Quantize.dynamic, True): "dynamic_range_quant", (Quantize.dynamic, False): "dynamic_range_quant",
    (Quantize.int8, True): "full_integer_quant", (Quantize.int8, False): "integer_quant",
}
SIXTEEN_ARTIFACT = {True: "full_integer_quant_with_int16_act", False: "integer_quant_with_int16_act"}  # 16x8
_LAYOUT_NAMES = {3: ("NCW", "NWC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}


@dataclass(frozen=True)
class Converted:
    """One onnx2tf run: its .tflite files by suffix, the float32 baseline (ONNX names restored) and the
    layout changes it made."""

    files: dict[str, Path]
    names: tuple[list[str], list[str]]
    baseline: bytes
    layouts: dict[str, Layout]  # tensor name -> its layout change (none: not changed)
    saved_model: Path  # onnx2tf's float SavedModel, which int8 files calibrated on other samples reuse

    def model(self, suffix: str) -> bytes:
        """The model onnx2tf wrote with this suffix, ONNX names restored, refused if LiteRT cannot run it."""
        model = self.baseline if suffix == "float32" else rename_signature(self.files[suffix].read_bytes(),
                                                                           *self.names)
        check_builtin_only(model)
        return model


def convert(graph: OnnxGraph, calib: Dataset | None, quantize: Quantize, workdir: Path,
            model: onnx.ModelProto | None = None) -> Converted:
    """Run onnx2tf once (int8 also writes float16 and dynamic) in a fresh scratch directory under workdir.

    model: the graph to convert in place of graph.model, computing the same function (e.g. respelled by
    graph/onnx_fast_path.py); the layouts are still checked against graph's outputs.
    """
    check_ops(model or graph.model)
    # A fresh directory per conversion: a build may convert twice (pruned, then the unpruned reference).
    scratch = Path(tempfile.mkdtemp(prefix="onnx2tf-", dir=workdir))
    files = run_onnx2tf(graph, calib, quantize, scratch, model)
    names = ([s.name for s in graph.inputs], list(graph.output_names))
    baseline = rename_signature(files["float32"].read_bytes(), *names)
    check_builtin_only(baseline)  # before LiteRT opens it: a Flex op fails there with a traceback-worthy error
    return Converted(files, names, baseline, find_layouts(graph, baseline, calib), scratch / "out")


def check_ops(model: onnx.ModelProto) -> None:
    """Refuse, naming them, ops onnx2tf has no converter for (it has one module per op)."""
    spec = importlib.util.find_spec("onnx2tf")  # locates the package without importing TensorFlow
    if spec is None or spec.origin is None:
        raise ConversionError("onnx2tf is not installed, so ONNX models cannot become TFLite",
                              "install it (make install does, with --no-deps), or use --format onnx")
    known = {p.stem for p in (Path(spec.origin).parent / "ops").glob("*.py")}
    missing = sorted({n.op_type for n in model.graph.node
                      if n.op_type not in known or n.domain not in ("", "ai.onnx")})
    if missing:
        raise ConversionError(f"op {', '.join(missing)} cannot be converted to TFLite (onnx2tf has no "
                              "converter for it)", "use --format onnx: onnxruntime runs ONNX models directly")


def run_onnx2tf(graph: OnnxGraph, calib: Dataset | None, quantize: Quantize, scratch: Path,
                model: onnx.ModelProto | None = None) -> dict[str, Path]:
    """Run onnx2tf on the normalised model (or `model`); return its .tflite outputs by suffix."""
    model_path = scratch / "model.onnx"
    model_path.write_bytes(_for_onnx2tf(graph, model))
    args = [sys.executable, "-m", "onnx2tf", "-i", str(model_path), "-o", str(scratch / "out"), "-osd"]
    if quantize is Quantize.int8:
        assert calib is not None, "the recipe guarantees calibration data for int8"
        args += ["-oiqt", "-qt", "per-channel", *_calibration_args(graph, calib, scratch)]
    elif quantize is Quantize.dynamic:
        args += ["-odrqt"]
    _write_stand_in(graph, calib, scratch)
    try:
        done = subprocess.run(args, cwd=scratch, env=environment(), capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"onnx2tf did not finish within {TIMEOUT_S} s", "use --format onnx") from exc
    files = {p.stem.removeprefix("model_"): p for p in (scratch / "out").glob("model_*.tflite")}
    if done.returncode != 0 or "float32" not in files:
        reason = error_line(done.stdout + done.stderr)
        raise ConversionError(f"onnx2tf could not convert the model to TFLite: {reason}",
                              "use --format onnx: onnxruntime runs the ONNX model directly")
    return files


def _for_onnx2tf(graph: OnnxGraph, given: onnx.ModelProto | None = None) -> bytes:
    """The normalised model (or `given`) as onnx2tf gets it: Erf (exact GELU) as TFLite builtins, since onnx2tf would
    make it the select op FlexErf that LiteRT cannot run (graph/onnx_ops.erf_as_builtins; the ONNX candidates keep
    Erf)."""
    source = given or graph.model
    if not any(n.op_type == "Erf" for n in source.graph.node):
        return source.SerializeToString() if given is not None else graph.path.read_bytes()
    import onnx

    from edgekiln.compiler.graph.onnx_ops import erf_as_builtins

    model = onnx.ModelProto()
    model.CopyFrom(source)
    erf_as_builtins(model)
    return model.SerializeToString()


def environment() -> dict[str, str]:
    """onnx2tf's environment: our interpreter's bin dir first (it runs `onnxsim` by name), quiet
    TensorFlow, and a proxy nobody listens on, so any download attempt fails at once."""
    dead = "http://127.0.0.1:9"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
            "NO_PROXY": "", "no_proxy": "", "PATH": path,
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": "-1"}


def nhwc(array: np.ndarray) -> np.ndarray:
    """Channels-first -> channels-last for rank 3-5 (what onnx2tf's inputs expect); others unchanged."""
    perm = channels_last_perm(array.ndim)
    return np.ascontiguousarray(array.transpose(perm)) if perm else array


def channels_last_perm(rank: int) -> list[int] | None:
    return [0, *range(2, rank), 1] if rank in _LAYOUT_NAMES else None


def _calibration_args(graph: OnnxGraph, calib: Dataset, scratch: Path) -> list[str]:
    """-cind NAME FILE MEAN STD per input: our data, channels-last, already normalised (mean 0, std 1)."""
    args: list[str] = []
    for spec in graph.inputs:
        data = nhwc(calib.inputs[spec.name].astype(np.float32))
        path = scratch / f"calib_{len(args)}.npy"
        np.save(path, data)
        broadcast = repr(np.zeros([1] * data.ndim).tolist())
        args += ["-cind", spec.name, str(path), broadcast, broadcast.replace("0.0", "1.0")]
    return args


def _write_stand_in(graph: OnnxGraph, calib: Dataset | None, scratch: Path) -> None:
    """onnx2tf loads this file (20 x 128x128 RGB) for 3-channel image inputs instead of downloading it.

    Built from our own data when there is any (channels-last, nearest-neighbour resize, channels
    repeated to 3), so its test inference sees realistic values; zeros otherwise.
    """
    stand_in = np.zeros((20, 128, 128, 3), np.float32)
    if calib is not None and graph.inputs and len(graph.inputs[0].shape) == 4:
        x = nhwc(calib.inputs[graph.inputs[0].name].astype(np.float32))
        rows = (np.arange(128) * x.shape[1] // 128)
        cols = (np.arange(128) * x.shape[2] // 128)
        x = x[np.arange(20) % x.shape[0]][:, rows][:, :, cols]
        stand_in = np.ascontiguousarray(x[..., np.arange(3) % x.shape[3]])
    np.save(scratch / STAND_IN, stand_in)


def error_line(text: str) -> str:
    """The most telling line of onnx2tf's output: its ERROR lines, else the last exception line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if "ERROR" in line and len(line) > len("ERROR:") + 2]
    exceptions = [line for line in lines if re.match(r"^\w+(\.\w+)*(Error|Exception): ", line)]
    chosen = (exceptions or errors or lines or ["no output"])[-1]
    return chosen[:300]


def check_builtin_only(model: bytes) -> None:
    """onnx2tf allows TF select (Flex) ops; LiteRT on the device cannot run them."""
    from edgekiln.compiler.analyze.tflite_stats import tflite_stats

    try:
        ops = tflite_stats(model).ops
    except (RuntimeError, ValueError) as exc:
        flex = sorted(set(re.findall(r"\((Flex\w+)\)", str(exc))))
        if flex or "Select TensorFlow op" in str(exc):  # LiteRT refuses to open a model with TF select ops
            raise ConversionError(f"onnx2tf produced ops LiteRT cannot run: {', '.join(flex) or 'TF select ops'}",
                                  "use --format onnx") from exc
        raise ConversionError(f"the TFLite model onnx2tf produced cannot be loaded: {first_line(exc)}",
                              "use --format onnx") from exc
    foreign = sorted(op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE_CUSTOM"))
    if foreign:
        raise ConversionError(f"onnx2tf produced ops LiteRT cannot run: {', '.join(foreign)}",
                              "use --format onnx, or --quantize dynamic")


def find_layouts(graph: OnnxGraph, baseline: bytes, sample: Dataset | None) -> dict[str, Layout]:
    """Per input/output: the transposition from the ONNX layout to the compiled one (or none).

    Candidates come from the shapes (identity, channels-last); the combination that makes the
    float32 TFLite reproduce the ONNX model on one real sample is kept.
    """
    from edgekiln.compiler.tf_env import quiet_fds
    from edgekiln.runtime import Model

    try:
        with quiet_fds():
            compiled = Model("tflite", baseline, threads=1)
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(f"LiteRT cannot open the TFLite model onnx2tf produced: {first_line(exc)}",
                              "use --format onnx") from exc
    feeds = _probe_inputs(graph, sample)
    reference = graph.run(feeds)
    source_shapes = [s.shape for s in graph.inputs]
    inputs = _in_source_order(compiled.inputs, [s.name for s in graph.inputs])
    outputs = _in_source_order(compiled.outputs, list(graph.output_names))
    for perms in itertools.product(*[_candidates(s, i.shape) for s, i in zip(source_shapes, inputs, strict=True)]):
        moved = {i.name: f.transpose(p) for i, f, p in zip(inputs, feeds.values(), perms, strict=True)}
        with quiet_fds():  # LiteRT announces its delegate at the first invocation
            raw = compiled.predict_list([moved[i.name] for i in compiled.inputs])
        by_name = {o.name: r for o, r in zip(compiled.outputs, raw, strict=True)}
        matched = [_matching_perm(r, by_name[o.name]) for r, o in zip(reference, outputs, strict=True)]
        out_perms = [p for p in matched if p is not None]
        if len(out_perms) == len(matched):
            shapes = [*source_shapes, *[(graph.batch, *r.shape[1:]) for r in reference]]
            names = [*feeds, *graph.output_names]
            firsts = [s.channels_first for s in graph.inputs] + [True] * len(reference)  # outputs: as PyTorch
            return {n: _layout(p, s, f) for n, p, s, f in zip(names, [*perms, *out_perms], shapes, firsts,
                                                              strict=True) if p != list(range(len(p)))}
    raise ConversionError("onnx2tf's float32 TFLite does not reproduce the ONNX model on a real sample",
                          "use --format onnx")


def _in_source_order(tensors: list, names: list[str]) -> list:
    """The compiled model's inputs or outputs in the ONNX model's order: LiteRT lists a signature's tensors by
    name (MiniLM's `attention_mask` before `input_ids`), and rename_signature gave them the ONNX names; tensors
    whose names do not match keep their position."""
    by_name = {t.name: t for t in tensors}
    if sorted(by_name) != sorted(names):
        return list(tensors)
    return [by_name[name] for name in names]


def _probe_inputs(graph: OnnxGraph, sample: Dataset | None) -> dict[str, np.ndarray]:
    if sample is not None:
        return {s.name: model_feed(sample.inputs[s.name][: graph.batch]) for s in graph.inputs}
    rng = np.random.default_rng(0)  # no data: random floats; integer inputs (token ids, masks) ones, valid for any
    return {s.name: np.ones([graph.batch, *s.shape[1:]], s.dtype) if np.dtype(s.dtype).kind in "iu"  # vocabulary
            else rng.random([graph.batch, *s.shape[1:]], np.float32) for s in graph.inputs}


def _candidates(source: tuple[int, ...], compiled: tuple[int, ...]) -> list[list[int]]:
    perms = [list(range(len(source)))]
    last = channels_last_perm(len(source))
    if last:
        perms.append(last)
    fits = [p for p in perms if tuple(source[i] for i in p)[1:] == tuple(compiled)[1:]]
    return fits or perms[:1]


def _matching_perm(reference: np.ndarray, compiled: np.ndarray) -> list[int] | None:
    """The perm with reference.transpose(perm) == compiled (float tolerance), if any."""
    tolerance = 1e-3 * float(np.max(np.abs(reference))) + 1e-4
    for perm in _candidates(reference.shape, compiled.shape):
        moved = reference.transpose(perm)
        if moved.shape == compiled.shape and float(np.max(np.abs(moved - compiled))) <= tolerance:
            return perm
    return None


def _layout(perm: list[int], source_shape: tuple[int, ...], channels_first: bool) -> Layout:
    """The manifest record; axis letters are the source's (NCHW-like unless it looks channels-last)."""
    letters = _LAYOUT_NAMES[len(perm)][0 if channels_first or source_shape[-1] not in (1, 3, 4) else 1]
    return {"source": letters, "compiled": "".join(letters[i] for i in perm), "perm": list(perm),
            "source_shape": list(source_shape)}


def version() -> str:
    from importlib import metadata

    return metadata.version("onnx2tf")
