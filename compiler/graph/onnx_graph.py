"""ONNX sources (.onnx, PyTorch-style NCHW or any other layout) as a working graph.

Loading checks the file (onnx.checker), inlines external data, turns weights stored as `Constant`
nodes into initializers (so quantizers and pruning see them), fixes dynamic axes (the batch from the
recipe, the others from --input-shape or the data: graph/onnx_shapes.py), and opens the result in
onnxruntime: an op onnxruntime cannot run is refused here, with its name, before any conversion starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import InputModelError, first_line
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.runtime.backends import onnx_session

if TYPE_CHECKING:
    import onnx
    from onnxruntime import InferenceSession

    from edgekiln.compiler.graph.onnx_shapes import FixedInput

# ai.onnx opsets accepted. Below 11 the int8 quantizer and onnx2tf refuse models; 11..23 cover what
# PyTorch, tf2onnx and other exporters write today. ORT 1.32 runs newer stamps, but ops introduced
# after 23 were measured missing (e.g. Swish at opset 26: NOT_IMPLEMENTED).
MIN_OPSET, MAX_OPSET = 11, 23
_DEFAULT_DOMAINS = {"", "ai.onnx"}
_ORT_DOMAINS = {"ai.onnx.ml", "com.microsoft"}  # domains onnxruntime's CPU provider implements


@dataclass
class OnnxGraph:
    """A checked, normalised ONNX model (batch fixed, weights as initializers) and its session.

    path: the normalised model written to the build's work directory, one file (what the
    quantizer and onnx2tf read). The session is the source model's reference.
    """

    source_format: str
    model: onnx.ModelProto
    path: Path
    inputs: list[InputSpec]
    output_names: list[str]
    params: int
    constants_normalised: int = 0
    fixed_inputs: list[FixedInput] = field(default_factory=list)  # how open axes were closed
    shape_nodes_folded: int = 0
    _session: InferenceSession | None = field(default=None, repr=False)
    # onnx2tf's conversions of this graph (emit/tflite_from_onnx.Converted), by what it was given: the cross-fitting
    # folds reuse the build's SavedModel instead of converting again (search/onnx2tf_builder.py). Typed `object`:
    # the graph layer does not import the emitters (the builder checks the type it reads back).
    tflite_conversions: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else 1

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Float reference outputs (onnxruntime), in output_names order, in chunks of the fixed batch
        (the last chunk padded by repeating its last sample; the padding's outputs are dropped)."""
        session = self.session()
        total = next(iter(inputs.values())).shape[0]
        step = max(1, self.batch)
        chunks = []
        for start in range(0, total, step):
            feed = {k: v[start:start + step] for k, v in inputs.items()}
            real = next(iter(feed.values())).shape[0]
            feed = {k: np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)]) for k, v in feed.items()}
            chunks.append([out[:real] for out in _run(session, self.output_names, feed)])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def session(self) -> InferenceSession:
        if self._session is None:
            self._session = open_session(self.model.SerializeToString())
        return self._session


def _run(session: InferenceSession, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """session.run; a model that loads but cannot run (channels that do not match a kernel's, a damaged
    shape constant) is an InputModelError, not onnxruntime's traceback."""
    try:
        return session.run(names, feed)
    except Exception as exc:  # noqa: BLE001  (Fail / InvalidArgument / RuntimeException: no common base)
        raise InputModelError(f"onnxruntime cannot run the model: {first_line(exc)}",
                              "check it runs in onnxruntime on inputs of the given shapes, or re-export it") from exc


def load(path: str | Path, workdir: Path, batch: int = 1, input_shapes: dict[str, tuple[int, ...]] | None = None,
         data_shapes: dict[str, dict[str, tuple[int, ...]]] | None = None) -> OnnxGraph:
    """Read, check and normalise an ONNX file; refuse what the pipeline or onnxruntime cannot handle.

    input_shapes: the user's static shapes per input name; data_shapes: per data role, the sample shape
    of each input (the default for axes left open, onnx_shapes.fix_inputs).
    """
    import onnx

    from edgekiln.compiler.graph.onnx_ops import standard_erfc
    from edgekiln.compiler.graph.onnx_shapes import fix_inputs, fold

    source = Path(path)
    model = _read(source)
    _check_opsets(model, source)
    standard_erfc(model)  # a tf2onnx export of a Keras GELU: the one rewrite made before the checker
    try:
        onnx.checker.check_model(model)  # the user's model, before we change anything
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:  # a damaged name is not UTF-8
        raise InputModelError(f"{source.name} is not a valid ONNX model: {first_line(exc)}",
                              "re-export it; onnx.checker.check_model must pass") from exc
    constants = constants_to_initializers(model.graph)
    fixed = fix_inputs(model, batch, input_shapes, data_shapes or {}, source)
    folded = fold(model) if any(f.origin != "batch" for f in fixed) else 0  # shape arithmetic now constant
    out = workdir / "source_normalised.onnx"
    out.write_bytes(model.SerializeToString())
    graph = OnnxGraph("onnx", model, out, input_specs(model), [o.name for o in model.graph.output],
                      param_count(model), constants, fixed_inputs=fixed, shape_nodes_folded=folded)
    graph.session()  # fail now, naming the op, if onnxruntime cannot run it
    return graph


def _read(source: Path) -> onnx.ModelProto:
    """The ModelProto with external data inlined; a clear error for non-ONNX or truncated files."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import load_external_data_for_model

    try:
        model = onnx.load(str(source), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise InputModelError(f"{source.name} is not a readable ONNX model (truncated, or not an ONNX file)",
                              "re-export it, e.g. with torch.onnx.export") from exc
    _refuse_over_2gb(model, source)  # before reading gigabytes of weights that could not be used
    try:
        load_external_data_for_model(model, str(source.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:  # a missing external-data file
        raise InputModelError(f"{source.name}: cannot read its external data: {first_line(exc)}",
                              "keep the .onnx file next to its external-data files") from exc
    if not model.graph.node or not model.graph.output:
        raise InputModelError(f"{source.name} is not a readable ONNX model (no graph in it)",
                              "is it an ONNX file? re-export it")
    if model.ByteSize() >= 2**31:
        raise InputModelError(f"{source.name} is over 2 GB, beyond what edgekiln handles in one protobuf",
                              "such a model will not fit a Raspberry-Pi-class device anyway")
    return model


def _refuse_over_2gb(model: onnx.ModelProto, source: Path) -> None:
    """A model whose graph and weights together pass 2 GB: the quantizers, the shape inference and onnx2tf all
    handle a model as one protobuf, which cannot exceed 2 GB. Counted from the external-data entries' lengths
    (or their files' sizes), without reading them."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    size = model.ByteSize()
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            info = ExternalDataInfo(tensor)
            where = source.parent / info.location
            length = info.length or (where.stat().st_size - (info.offset or 0) if where.is_file() else 0)
            size += length
    if size >= 2**31:
        raise InputModelError(f"{source.name} holds {size / 2**30:.1f} GB of graph and weights, over the 2 GB "
                              "that one ONNX protobuf can hold, which its quantization and conversion need",
                              "such a model will not fit a Raspberry-Pi-class device anyway; prune or "
                              "distill it to under 2 GB first")


def _check_opsets(model: onnx.ModelProto, source: Path) -> None:
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and not MIN_OPSET <= opset.version <= MAX_OPSET:
            raise InputModelError(
                f"{source.name} uses ONNX opset {opset.version}; edgekiln supports {MIN_OPSET}-{MAX_OPSET}",
                "re-export with opset 17, or onnx.version_converter.convert_version(model, 17)")
        if opset.domain not in _DEFAULT_DOMAINS | _ORT_DOMAINS:
            ops = sorted({n.op_type for n in model.graph.node if n.domain == opset.domain})
            raise InputModelError(f"{source.name} uses custom ops {', '.join(ops) or '?'} of domain "
                                  f"'{opset.domain}', which no device runtime implements",
                                  "re-export the model with standard ONNX ops")


def constants_to_initializers(graph: onnx.GraphProto) -> int:
    """Move tensors held by `Constant` nodes into initializers (in place); return how many moved.

    Exporters other than PyTorch's often store weights this way. Weight-aware code reads
    initializers: parameter counts, pruning's channel graph, and quantizers (onnxruntime's
    pre-processing happens to fold Constants itself; not every tool does). One form for all.
    """
    from onnx import numpy_helper

    kept, moved = [], 0
    for node in graph.node:
        array = _constant_value(node)
        if array is None:
            kept.append(node)
            continue
        graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
        moved += 1
    if moved:
        del graph.node[:]
        graph.node.extend(kept)
    return moved


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The numeric value of a Constant node, or None (other nodes, strings, sparse tensors)."""
    from onnx import helper, numpy_helper

    if node.op_type != "Constant" or node.domain not in _DEFAULT_DOMAINS or len(node.attribute) != 1:
        return None
    attr = node.attribute[0]
    if attr.name == "value" and attr.t.data_type != 8:  # 8 = STRING
        return numpy_helper.to_array(attr.t)
    scalars = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
               "value_ints": np.int64}
    if attr.name in scalars:
        return np.asarray(helper.get_attribute_value(attr), dtype=scalars[attr.name])
    return None


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The graph inputs that are not initializers, with static shapes and numpy dtype names."""
    from onnx import helper

    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        except (KeyError, TypeError, ValueError):  # elem_type 0 (UNDEFINED) or a number onnx does not know
            raise InputModelError(f"ONNX input '{value.name}' has no tensor type onnx knows "
                                  f"(elem_type {tensor.elem_type})",
                                  "re-export the model with typed inputs (e.g. torch.onnx.export)") from None
        specs.append(InputSpec(value.name, shape, dtype, channels_first=_looks_nchw(shape)))
    return specs


def _looks_nchw(shape: tuple[int, ...]) -> bool:
    """A 1- or 3-channel image tensor with its channels before its (larger) spatial axes."""
    return len(shape) == 4 and shape[1] in (1, 3) and min(shape[2], shape[3]) > 4


def param_count(model: onnx.ModelProto) -> int:
    """Elements of the floating-point initializers: the weights and biases (shape tensors excluded)."""
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in (1, 10, 11, 16)))


def open_session(model_bytes: bytes, threads: int | None = None, optimize: bool = True) -> InferenceSession:
    """An onnxruntime CPU session; an op without a kernel becomes an InputModelError naming it.

    int8 products are exact on every x86 CPU (the runtime's reason: runtime/backends.py OnnxBackend).
    optimize=False keeps every node as written (no fusion), so each intermediate tensor can be read.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.x64quantprecision", "1")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnx_session(ort, model_bytes, options)  # the bundle runtime's, with its fallback
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises Fail / NotImplemented / InvalidGraph ...)
        raise _session_error(str(exc), ort.__version__) from exc


def _session_error(text: str, version: str) -> InputModelError:
    import re

    missing = re.search(r"Could not find an implementation for (\w+)\((\d+)\)", text) or \
        re.search(r"(\S+)\((-?\d+)\) is not a registered function/op", text)
    if missing:
        return InputModelError(f"op {missing.group(1)} (version {missing.group(2)}) has no onnxruntime "
                               f"{version} CPU kernel for these tensor types: the device cannot run it",
                               "replace the op, or re-export the model with opset 17")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "unknown error")
    return InputModelError(f"onnxruntime {version} cannot load the model: {first[:300]}",
                           "check the model with onnx.checker and re-export it")



__all__ = ["MIN_OPSET", "MAX_OPSET", "OnnxGraph", "load", "open_session", "param_count"]
