"""ONNX artifacts for onnxruntime: float32, int8 (static QDQ) and dynamic int8.

Keras/SavedModel sources are converted with tf2onnx (explicit input signature, opset 17); ONNX
sources are used as loaded and normalised. int8 is `quant_pre_process` (shape inference and
onnxruntime's graph optimisations) then `quantize_static` in QDQ format: per-channel int8 weights (per tensor
below opset 13 when the opset cannot be raised: emit/onnx_opset.py),
activations of the target's type (uint8 on x86, int8 on ARM: FACTS.md), calibrated on our data
through a CalibrationDataReader. I/O stays float32: the QDQ nodes wrap the integer compute.

onnxruntime's options are stringly typed (`extra_options`); they are mapped here from our typed
options and go no further.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.emit import EmitOptions, onnx_guard
from edgekiln.compiler.emit.kl import kl_threshold
from edgekiln.compiler.errors import ConversionError, EdgekilnError, RecipeError, first_line
from edgekiln.compiler.graph.onnx_ops import standard_erfc
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import CalibrationMethod, Quantize
from edgekiln.compiler.tf_env import import_tf, quiet_fds

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.graph.keras_graph import KerasGraph

OPSET = 17
PERCENTILE = 99.999  # percentile calibration keeps this share of each activation's values
ENTROPY_BINS = {"num_bins": 2048, "num_quantized_bins": 256}  # histogram bins; bins of the 8-bit grid


def keras_to_onnx(graph: KerasGraph, batch: int) -> bytes:
    """tf2onnx over the serving signature with an explicit input signature; names are kept. Converted once per
    graph and batch: the same bytes every time (tests/integration/test_keras_to_onnx.py), so the builds of the
    cross-fitting folds (search/crossfit.py) read the build's conversion instead of converting again."""
    if batch not in graph.onnx_bytes:
        graph.onnx_bytes[batch] = _tf2onnx(graph, batch)
    return graph.onnx_bytes[batch]


def _tf2onnx(graph: KerasGraph, batch: int) -> bytes:
    tf = import_tf()
    import tf2onnx

    names = [spec.name for spec in graph.inputs]
    signature = [tf.TensorSpec([batch, *spec.shape[1:]], spec.dtype, name=spec.name) for spec in graph.inputs]

    @tf.function(input_signature=signature)
    def serving(*args: Any) -> Any:
        return graph.signature(**dict(zip(names, args, strict=True)))

    try:
        with quiet_fds():
            model, _ = tf2onnx.convert.from_function(serving, input_signature=signature, opset=OPSET)
    except Exception as exc:  # noqa: BLE001  (tf2onnx raises many types)
        raise ConversionError(f"tf2onnx could not convert the model to ONNX: {first_line(exc)}",
                              "use --format tflite") from exc
    extra = [i.name for i in model.graph.input if i.name not in names]
    if extra:  # a tensor the function captured (not a variable) that tf2onnx did not fold into a constant
        raise ConversionError(f"tf2onnx left {len(extra)} captured tensor(s) as extra model inputs "
                              f"({', '.join(extra[:3])}): the ONNX model would need inputs the source does not "
                              "have", "use --format tflite")
    shorten_names(model)
    model.graph.doc_string = "tf2onnx: the Keras model's serving function"  # it named the traced function's number
    standard_erfc(model)
    data = model.SerializeToString()
    _check_runs(data)
    return data


def _check_runs(model: bytes) -> None:
    """onnxruntime loads what tf2onnx made, or the format is refused here with the reason (not mid-search)."""
    from edgekiln.compiler.graph.onnx_graph import open_session

    try:
        open_session(model, threads=1, optimize=False)
    except EdgekilnError as exc:
        raise ConversionError(f"onnxruntime cannot load the tf2onnx output: {exc}", "use --format tflite") from exc


_WRAPPER_SCOPE = re.compile(r"^(StatefulPartitionedCall/)+[^/]+/")
_INSERTED = re.compile(r"^(.*__)(\d+)(:\d+)?$")  # tf2onnx's inserted node NAME__N, or its output NAME__N:I


def shorten_names(model: onnx.ModelProto) -> None:
    """Drop the SavedModel wrapper scopes tf2onnx puts in front of every internal name, and number the
    nodes it inserted in graph order (in place).

    `StatefulPartitionedCall/StatefulPartitionedCall/mnist_resnet_1/conv2d_1/...` becomes
    `conv2d_1/...`: the layer names stay readable, and the int8 file no longer spends a sixth
    of its bytes on repeated prefixes. tf2onnx numbers inserted nodes (`Conv__27`) from a process-wide
    counter, so the same model converted after another conversion had other names and other bytes (the
    second build of a process, a test after other tests): numbered here 1, 2, ... in graph order instead.
    Graph input/output names are never changed.
    """
    graph = model.graph
    keep = {v.name for v in [*graph.input, *graph.output]}
    names = dict.fromkeys(n for node in graph.node for n in [node.name, *node.input, *node.output])
    names.update(dict.fromkeys([*(t.name for t in graph.initializer), *(v.name for v in graph.value_info)]))
    mapping = {n: _WRAPPER_SCOPE.sub("", n) for n in names if n and n not in keep}
    numbers: dict[str, int] = {}  # NAME__N (a node and its outputs alike) -> its number in graph order
    for name, short in mapping.items():
        if found := _INSERTED.match(short):
            number = numbers.setdefault(found[1] + found[2], len(numbers) + 1)
            mapping[name] = f"{found[1]}{number}{found[3] or ''}"
    if len(set(mapping.values()) | keep) != len(mapping) + len(keep):
        return  # shortening would merge two names: keep them long
    for node in graph.node:
        node.name = mapping.get(node.name, node.name)
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for item in [*graph.initializer, *graph.value_info]:
        item.name = mapping.get(item.name, item.name)


def quantized(float_model: bytes, calib: Dataset | None, options: EmitOptions) -> bytes:
    """The float model in options.quantize: as is (none), dynamic int8, or static QDQ int8."""
    if options.quantize is Quantize.none:
        return float_model
    if options.quantize is Quantize.float16:
        raise RecipeError("--quantize float16 is not available for ONNX artifacts",
                          "use --quantize int8, dynamic or none, or --format tflite")
    float_path = options.workdir / "onnx_float.onnx"
    float_path.write_bytes(float_model)
    if options.quantize is Quantize.dynamic:
        return _dynamic(float_path, options.workdir)
    assert calib is not None, "the recipe guarantees calibration data for int8"
    return static(float_path, calib, options)


def static(float_path: Path, calib: Dataset, options: EmitOptions, exclude: tuple[str, ...] = (),
            shared: Path | None = None, sixteen: tuple[str, ...] = ()) -> bytes:
    """Static QDQ int8; `exclude` names nodes of the pre-processed model that stay in float, `sixteen` activation
    tensors quantized to int16 instead (per-layer mixed precision: each consumer dequantizes what it is given, so
    no requantization is needed on onnxruntime's CPU kernels; the quantizer raises the opset to 21).

    shared: a folder keeping the pre-processed model and each calibration method's ranges across calls.
    The candidates of one build differ only in activation type, method and excluded nodes: they quantize
    the same prepared model, and ranges computed once per method (quantize_static's calibration cache).
    """
    from onnxruntime import quantization as q

    folder = shared or options.workdir
    prepared, out = folder / "onnx_prepared.onnx", options.workdir / "onnx_int8.onnx"
    activation = {"int8": q.QuantType.QInt8, "uint8": q.QuantType.QUInt8,  # int16: 16x8, opset raised to 21
                  "int16": q.QuantType.QInt16}[options.activation_type]
    method = {CalibrationMethod.auto: q.CalibrationMethod.MinMax,  # ONNX `auto` outside the search: min/max
              CalibrationMethod.minmax: q.CalibrationMethod.MinMax,
              CalibrationMethod.entropy: q.CalibrationMethod.Entropy,
              CalibrationMethod.percentile: q.CalibrationMethod.Percentile}[options.calibration_method]
    ranges = folder / f"onnx_{options.calibration_method}_ranges.json" if shared else None
    percentile = options.calibration_method is CalibrationMethod.percentile
    extra: dict[str, Any] = {"CalibPercentile": PERCENTILE} if percentile else {}  # our typed options as
    if sixteen:  # onnxruntime's string keys: per-tensor overrides of the activation type
        extra["TensorQuantOverrides"] = {t: [{"quant_type": q.QuantType.QInt16}] for t in sixteen}
    try:
        with quiet_fds():
            if shared is None or not prepared.is_file():
                prepare(float_path, prepared)
            kept = _kept_in_float(prepared, calib, options.batch, folder, reuse=shared is not None)
            if method is q.CalibrationMethod.MinMax:  # the ranges the guard read: no second calibration pass
                ranges = folder / "onnx_minmax_ranges.json"
            if method is q.CalibrationMethod.Entropy and (ranges is None or not ranges.is_file()):
                ranges = _entropy_ranges(onnx_guard.without_fill(prepared), calib, options.batch,
                                         folder / "onnx_entropy_ranges.json")
            if method is q.CalibrationMethod.Percentile and (ranges is None or not ranges.is_file()):
                ranges = _calibrated_ranges(onnx_guard.without_fill(prepared), calib, options.batch,
                                            folder / "onnx_percentile_ranges.json", "Percentile")
            q.quantize_static(str(prepared), str(out), _reader(calib, options.batch),
                              quant_format=q.QuantFormat.QDQ, per_channel=options.per_channel,
                              activation_type=activation, weight_type=q.QuantType.QInt8, calibrate_method=method,
                              extra_options=extra, calibration_cache_path=ranges,
                              nodes_to_exclude=list(dict.fromkeys([*exclude, *kept])))
    except Exception as exc:  # noqa: BLE001  (the quantizer raises ValueError, RuntimeError, ORT errors ...)
        raise ConversionError(f"onnxruntime int8 quantization failed: {first_line(exc)}",
                              "try --quantize dynamic, or --format tflite") from exc
    return out.read_bytes()


def _kept_in_float(prepared: Path, calib: Dataset, batch: int, folder: Path, reuse: bool) -> list[str]:
    """The nodes no int8 form represents (mask fill values, wide Softmax inputs: emit/onnx_guard.py), from
    the min/max ranges, calibrated once per folder; the list is recorded beside the prepared model."""
    import onnx

    minmax = folder / "onnx_minmax_ranges.json"
    if not reuse:  # a scratch folder may hold an earlier model's ranges
        minmax.unlink(missing_ok=True)
    if not minmax.is_file():
        _calibrated_ranges(prepared, calib, batch, minmax, "MinMax")
    if reuse and (folder / onnx_guard.RECORD).is_file():
        return [k["node"] for k in onnx_guard.recorded(folder)]
    kept = onnx_guard.kept_in_float(onnx.load(str(prepared)), onnx_guard.minmax_ranges(minmax))
    onnx_guard.record(kept, folder)
    return [k.node for k in kept]


def prepare(float_path: Path, prepared: Path) -> None:
    """quant_pre_process; without its symbolic shape inference when that cannot finish.

    Symbolic inference gives up on some graphs with data-dependent shapes (tf2onnx's attention blocks:
    Shape -> ReduceProd -> Reshape), "Incomplete symbolic shape inference"; ONNX's own shape inference
    after it still types every tensor the quantizer needs (shapes are fixed by --batch). Whether it finishes
    is found out first (_symbolic_shapes): on giving up, onnxruntime writes the half-inferred model as
    sym_shape_infer_temp.onnx into the current directory, a file the user never asked for.
    """
    import onnx
    from onnxruntime import quantization as q

    inferred = _symbolic_shapes(onnx.load(str(float_path)))
    source = float_path
    if inferred is not None:  # inferred once, not again inside; handed over as a file: given a ModelProto,
        source = prepared.with_name("onnx_inferred.onnx")  # quant_pre_process moves large initializers
        onnx.save(inferred, str(source))  # out to a "foo.bin" that its shape inference cannot read
    q.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)


def _symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """SymbolicShapeInference.infer_shapes without its save-on-failure (onnxruntime 1.32's code): the model with
    every shape inferred, or None where it gives up."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    inference = SymbolicShapeInference(2**31 - 1, False, False, 0)
    try:
        inference._preprocess(model)  # noqa: SLF001
        finished = False
        while inference.run_:
            finished = inference._infer_impl()  # noqa: SLF001
        inference._update_output_from_vi()  # noqa: SLF001
    except Exception:  # noqa: BLE001  (an op it cannot infer: the same answer as giving up)
        return None
    return inference.out_mp_ if finished else None


def _entropy_ranges(prepared: Path, calib: Dataset, batch: int, cache: Path) -> Path:
    """Entropy (KL) calibration ranges, written to `cache` for quantize_static's calibration cache.

    quantize_static runs its entropy calibrator with 128 histogram bins for a 128-bin grid, where
    the search can only return the full min/max range (measured: identical scales). Calibrating
    here with a 2048-bin histogram makes the choice real; onnxruntime collects the histograms and
    `kl_threshold` (emit/kl.py) searches them (onnxruntime's own search took 15 s on the sample ResNet).
    """
    from onnxruntime.quantization import calibrate

    calibrator = calibrate.create_calibrator(prepared, None, str(cache.parent / "onnx_augmented.onnx"),
                                             calibrate_method=calibrate.CalibrationMethod.Entropy,
                                             extra_options=ENTROPY_BINS)
    calibrator.collect_data(_reader(calib, batch))
    ranges = {}
    for name, (hist, edges, lo, hi, *_) in calibrator.collector.histogram_dict.items():
        t_lo, t_hi = kl_threshold(hist, edges, ENTROPY_BINS["num_quantized_bins"])
        ranges[name] = calibrate.TensorData(lowest=np.array(max(lo, t_lo), np.float32),
                                            highest=np.array(min(hi, t_hi), np.float32))
    calibrate.save_tensors_data(calibrate.TensorsData(calibrate.CalibrationMethod.Entropy, ranges), cache)
    return cache


def _calibrated_ranges(prepared: Path, calib: Dataset, batch: int, cache: Path, method: str) -> Path:
    """onnxruntime's MinMax or Percentile (PERCENTILE of |x|) calibration of `prepared`, written to `cache`, which
    quantize_static then reads instead of calibrating again; done here so that the guard can read the min/max
    ranges first, and the histogram method can see onnx_guard.without_fill's model."""
    from onnxruntime.quantization import calibrate

    calibrator = calibrate.create_calibrator(prepared, None, str(cache.parent / f"onnx_{method}_augmented.onnx"),
                                             calibrate_method=calibrate.CalibrationMethod[method],
                                             extra_options={"percentile": PERCENTILE} if method == "Percentile" else {})
    calibrator.collect_data(_reader(calib, batch))
    calibrate.save_tensors_data(calibrator.compute_data(), cache)
    (cache.parent / f"onnx_{method}_augmented.onnx").unlink(missing_ok=True)
    return cache


def _dynamic(float_path: Path, workdir: Path) -> bytes:
    """int8 weights (per channel), activations quantized on the fly: no calibration data needed."""
    from onnxruntime import quantization as q

    out = workdir / "onnx_dynamic.onnx"
    try:
        with quiet_fds():
            # DefaultTensorType: the type of a tensor ONNX's shape inference cannot type, i.e. an output of a
            # com.microsoft op (the fused candidates' Attention, SkipLayerNormalization): float, as they all are
            q.quantize_dynamic(str(float_path), str(out), per_channel=True, weight_type=q.QuantType.QInt8,
                               extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"onnxruntime dynamic quantization failed: {first_line(exc)}",
                              "try --quantize none") from exc
    return out.read_bytes()


def _reader(calib: Dataset, batch: int) -> Any:
    """A CalibrationDataReader over our calibration set, in chunks of the compiled batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class DatasetReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = self._iterate()

        def _iterate(self) -> Iterator[dict[str, np.ndarray]]:
            return calibration_feeds(calib, batch)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

        def rewind(self) -> None:
            self._feeds = self._iterate()

    return DatasetReader()


def calibration_feeds(calib: Dataset, batch: int) -> Iterator[dict[str, np.ndarray]]:
    """The calibration samples in chunks of the compiled batch (a last partial chunk is left out)."""
    for start in range(0, calib.size - batch + 1, batch):
        yield {name: model_feed(x[start:start + batch]) for name, x in calib.inputs.items()}
