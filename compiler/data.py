"""Calibration and evaluation data: .npz, .npy or an image folder -> arrays checked against the model.

Every check names the expected and the given shape, so a user can fix the data without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekiln.compiler import batches
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.folds import Folds, split
from edgekiln.compiler.model_inputs import Dataset, InputSpec
from edgekiln.compiler.recipe import Quantize, Recipe
from edgekiln.compiler.text import TEXT_SUFFIXES, load_text

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


class SourceGraph(Protocol):
    """What the data checks, the reference outputs and the measurement read of a working graph
    (graph/keras_graph.KerasGraph, graph/onnx_graph.OnnxGraph): its float outputs, in output_names order."""

    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def load_data(path: str | Path, specs: list[InputSpec], *, role: str, min_samples: int = 1,
              mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,), tokenizer: str | None = None,
              seq_len: int | None = None) -> Dataset:
    """Read `path` for a model with inputs `specs`; role ('calibration', 'evaluation') is for messages.
    Text (.txt / .tsv, one sentence a line) is tokenized with `tokenizer` (compiler/text.py)."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"{role} data {source} does not exist")
    if source.is_dir():
        dataset = _load_image_folder(source, specs, role, mean, std)
    elif source.suffix == ".npz":
        dataset = _load_npz(source, specs, role)
    elif source.suffix == ".npy":
        dataset = _load_npy(source, specs, role)
    elif source.suffix in TEXT_SUFFIXES:
        dataset = load_text(source, specs, role, tokenizer, seq_len)
    else:
        raise DataError(f"{role} data {source} has an unknown type",
                        "use .npz, .npy, a folder of PNG/JPEG images, or a .txt of sentences with --tokenizer")
    for spec in specs:
        _check_array(dataset.inputs[spec.name], spec, role, source)
    counts = {name: array.shape[0] for name, array in dataset.inputs.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"{role} data {source}: the inputs hold different numbers of samples ({counts})",
                        "give every input the same number of samples, in the same order")
    if dataset.size < min_samples:
        raise DataError(f"{role} data {source} has {dataset.size} samples, at least {min_samples} are needed")
    _check_labels(dataset, role, source)
    return dataset


# Above this size an .npy stays memory-mapped and is read in batches (batches.py); below it, it is read whole, as
# it always was. An .npz is a zip, which cannot be mapped: above NPZ_HINT_BYTES a hint suggests .npy.
MAP_ABOVE_BYTES = batches.BATCH_BYTES
NPZ_HINT_BYTES = 256 * 2**20


def _np_load(path: Path, role: str, kind: str) -> np.ndarray | dict[str, np.ndarray]:
    """np.load without pickles, checked to be the kind its suffix says (.npz: arrays by name, .npy: one). An .npy
    is opened memory-mapped: only what is read of it is in memory."""
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:  # np.load opens an .npz lazily and would keep the file open
                loaded = {k: loaded[k] for k in loaded.files}
        elif loaded.nbytes <= MAP_ABOVE_BYTES:
            loaded = np.array(loaded)
    # numpy parses the header with ast and zipfile: a damaged file raises from EOFError and SyntaxError to
    # zlib.error and MemoryError (a header claiming a huge shape). Wrapped where it enters, with the file's name.
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{role} data {path} is not a readable {kind} file ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]})", "write it with np.savez / np.save") from None
    if (kind == ".npz") != isinstance(loaded, dict):
        found = "an .npz archive" if isinstance(loaded, dict) else "a single .npy array"
        raise DataError(f"{role} data {path} is {found}, not a {kind} file", f"rename it, or save it as {kind}")
    if kind == ".npz" and path.stat().st_size > NPZ_HINT_BYTES:
        batches.hint(f"{role} data {path.name} is {path.stat().st_size / 2**20:,.0f} MB of .npz, a zip, which is read "
                     "whole into memory; save each array with np.save as .npy to have it read in batches")
    return loaded


def first_sample(path: Path, role: str) -> list[np.ndarray]:
    """The first sample of each array of an .npz (in the file's order, but the labels 'y') or of an .npy, read
    as a build reads its data: an .npy over MAP_ABOVE_BYTES stays memory-mapped, so only that sample is read."""
    if path.suffix not in (".npz", ".npy") or not path.is_file():
        raise DataError(f"{role} data {path} is not an .npz or .npy file", "pass a .npz or .npy file")
    loaded = _np_load(path, role, path.suffix)
    arrays = [loaded] if isinstance(loaded, np.ndarray) else [a for k, a in loaded.items() if k != "y"]
    return [np.array(a[:1]) for a in arrays]

def _load_npz(path: Path, specs: list[InputSpec], role: str) -> Dataset:
    arrays = _np_load(path, role, ".npz")
    assert isinstance(arrays, dict)
    labels = arrays.pop("y", None)
    if len(specs) == 1 and specs[0].name not in arrays and "x" in arrays:
        arrays = {specs[0].name: arrays["x"]}
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        keys = ", ".join(sorted(arrays)) or "none"
        hint = "name one array per model input after the input"
        hint += ", or 'x' for a single input" if len(specs) == 1 else ""
        raise DataError(f"{role} data {path} lacks input '{missing[0]}' (its arrays: {keys})", hint)
    return Dataset({s.name: arrays[s.name] for s in specs}, labels, str(path))


def _load_npy(path: Path, specs: list[InputSpec], role: str) -> Dataset:
    if len(specs) != 1:
        raise DataError(f"{role} data {path} is one array but the model has {len(specs)} inputs",
                        "use an .npz with one array per input name")
    array = _np_load(path, role, ".npy")
    assert isinstance(array, np.ndarray)
    wanted = np.dtype(specs[0].dtype) if np.dtype(specs[0].dtype).kind in "iu" else np.dtype(np.float32)
    if isinstance(array, np.memmap) and array.dtype != wanted:  # in_model_types converts it, whole
        batches.hint(f"{role} data {path.name} is {array.dtype}, the model takes {wanted}: it is converted whole, in "
                     f"memory; save it as {wanted} to have it read in batches")
    return Dataset({specs[0].name: array}, None, str(path))


def _load_image_folder(folder: Path, specs: list[InputSpec], role: str, mean: tuple[float, ...],
                       std: tuple[float, ...]) -> Dataset:
    """Images (sorted by path) resized to the model input; class sub-folders give labels."""
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise DataError(f"an image folder can feed only a single image input; the model takes "
                        f"{[(s.name, s.shape) for s in specs]}", "use an .npz with one array per input")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{role} folder {folder} has no PNG/JPEG images")
    if specs[0].channels_first:
        _, channels, height, width = specs[0].shape
    else:
        _, height, width, channels = specs[0].shape
    if min(height, width, channels) < 1 or channels not in (1, 3):
        raise DataError(f"the model input shape {specs[0].shape} is not a fixed-size 1- or 3-channel image")
    if {len(mean), len(std)} - {1, channels}:
        raise DataError(f"--mean / --std give {len(mean)} / {len(std)} values for a {channels}-channel image input",
                        f"give 1 value, or {channels} (one per channel)")
    # One float32 array in the model's layout, filled image by image and normalised in place: the folder costs
    # its decoded size once (stacking, then normalising with temporaries, cost it four times).
    first = specs[0].channels_first
    images = np.empty((len(files), channels, height, width) if first else (len(files), height, width, channels),
                      np.float32)
    for k, path in enumerate(files):
        image = _read_image(path, height, width, channels)
        images[k] = image.transpose(2, 0, 1) if first else image
    shape = (channels, 1, 1) if first else (channels,)
    images /= np.float32(255.0)
    images -= np.broadcast_to(np.asarray(mean, np.float32).reshape(-1, *shape[1:]), shape)
    images /= np.broadcast_to(np.asarray(std, np.float32).reshape(-1, *shape[1:]), shape)
    classes = sorted({p.parent for p in files})
    labels = np.array([classes.index(p.parent) for p in files]) if len(classes) > 1 else None
    return Dataset({specs[0].name: images}, labels, str(folder))


def _read_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            resized = opened.convert("L" if channels == 1 else "RGB").resize((width, height),
                                                                               Image.Resampling.BILINEAR)
            array = np.asarray(resized, np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return array[..., None] if channels == 1 else array


def _check_array(array: np.ndarray, spec: InputSpec, role: str, path: Path) -> None:
    expected = "(N, " + ", ".join("?" if d < 0 else str(d) for d in spec.shape[1:]) + ")"
    if array.dtype.kind not in "fiu":
        raise DataError(f"{role} data {path}, input '{spec.name}': dtype {array.dtype} is not numeric",
                        "store float32 arrays")
    fixed = zip(spec.shape[1:], array.shape[1:], strict=False)  # lengths compared first, below
    if array.ndim != len(spec.shape) or any(e > 0 and e != g for e, g in fixed):
        raise DataError(f"{role} data {path}, input '{spec.name}': expected shape {expected}, got "
                        f"{tuple(array.shape)}{_layout_hint(array.shape, spec.shape)}")
    wanted = np.dtype(spec.dtype) if spec.dtype else np.dtype(np.float32)
    if wanted.kind in "iu" and array.dtype.kind == "f":
        raise DataError(f"{role} data {path}, input '{spec.name}': the model takes {wanted} (e.g. token ids) but "
                        f"the data are {array.dtype}", f"store the array as {wanted}")
    if not array.size:
        return
    low, high, finite = batches.summarise(array, f"checking {role} data")
    limits = np.iinfo(wanted.type) if wanted.kind in "iu" else None
    if limits is not None and (low < limits.min or high > limits.max):
        raise DataError(f"{role} data {path}, input '{spec.name}': values {low} .. {high} do not "
                        f"fit the model's {wanted}")
    if not finite:
        raise DataError(f"{role} data {path}, input '{spec.name}' contains NaN or infinite values")
    if max(abs(low), abs(high)) > np.finfo(np.float32).max:  # would turn into inf as float32
        raise DataError(f"{role} data {path}, input '{spec.name}' holds values beyond float32's range",
                        "normalise the data as the model was trained")


def _layout_hint(given: tuple[int, ...], expected: tuple[int, ...]) -> str:
    if len(given) == 4 and len(expected) == 4 and sorted(given[1:]) == sorted(expected[1:]):
        return " (channels-first vs channels-last? transpose the data to the model's layout)"
    return ""


def _check_labels(dataset: Dataset, role: str, path: Path) -> None:
    if dataset.labels is None:
        return
    labels = dataset.labels
    if labels.ndim != 1 or labels.shape[0] != dataset.size or labels.dtype.kind not in "iu":
        raise DataError(f"{role} data {path}: labels 'y' must be integers of shape ({dataset.size},), got "
                        f"{labels.dtype} {tuple(labels.shape)}")


def check_label_range(dataset: Dataset, classes: int, role: str) -> None:
    """Labels are class indices of the model's first output, 0 <= y < classes: an accuracy over
    impossible labels would be a number that means nothing."""
    labels = dataset.labels
    if labels is None or not labels.size:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise DataError(f"{role} data {dataset.origin}: labels 'y' range from {low} to {high}, but the model's "
                        f"first output scores {classes} class{'es' if classes != 1 else ''} (labels 0 to "
                        f"{classes - 1})", "store class indices of the model's output in 'y', or leave 'y' "
                        "out: fidelity to the source model needs no labels")


def in_model_types(dataset: Dataset, specs: list[InputSpec]) -> Dataset:
    """The dataset in the types the model takes: float32 inputs (what the quantizer and interpreters consume), but
    the inputs `specs` declare integer (token ids, masks) in that integer type, never a float round trip."""
    integer = {s.name: np.dtype(s.dtype) for s in specs if np.dtype(s.dtype).kind in "iu"}
    # copy=False: data already in the model's type is not copied again (datasets are never mutated)
    return Dataset({k: v.astype(integer.get(k, np.float32), copy=False) for k, v in dataset.inputs.items()},
                   dataset.labels, dataset.origin)


# The datasets of a build: what feeds the quantizer, what judges it, what tunes the search.
CALIBRATED = (Quantize.int8, Quantize.auto)  # modes that calibrate int8 activation ranges

MIN_CALIBRATION_SAMPLES = 10  # fewer gives activation ranges that are mostly noise
# The search's own decisions (calibration method, what stays float) are judged on at most this many of the
# calibration samples: each decision is a judgement of a model, made a dozen times per build and again per fold,
# and the figures that decide what ships are the cross-fitted ones, on every sample.
TUNING_SAMPLES = 64

# Which samples judged fidelity (the manifest's quantization.data.judged_by and fidelity.samples_from), one
# vocabulary for the manifest, the summary and the report.
CROSS_FITTED = "held-back (cross-fitting)"
EVALUATION = "evaluation"
NOT_HELD_BACK = "calibration (not held back)"


@dataclass(frozen=True)
class Datasets:
    """The data of a build: `samples`, every calibration sample given; `evaluation`, --eval (may be labelled).

    folds: the cross-fitting split of `samples` (folds.py): each calibrated candidate is also built once per
        fold from the other folds' samples and judged on the fold it never saw, so fidelity is judged on every
        sample, none by a model that saw it. None: cross-fitting is off (holdout_samples 0) or the samples are
        too few for a fold to calibrate on; fidelity is then judged on the evaluation data when given, else on
        the calibration samples themselves, and `judged_by` says so.
    calib_samples: at most this many samples feed one quantizer (the shipped model's, each fold's; --calib-samples,
        256 by default): only these are read into memory; the judge reads the rest of a memory-mapped .npy in
        batches (batches.py).
    """

    samples: Dataset | None
    evaluation: Dataset | None
    folds: Folds | None = None
    calib_samples: int = 256

    @cached_property
    def calib(self) -> Dataset | None:
        """What the shipped model's quantizer (and its search's decisions) take: every calibration sample."""
        return None if self.samples is None else self.samples.take(0, self.calib_samples).in_memory()

    def fold_calib(self, fold: int) -> Dataset:
        """What fold `fold`'s quantizer (and its search's decisions) take: the other folds' samples."""
        assert self.samples is not None and self.folds is not None
        return self.samples.subset(self.folds.fitted(fold)[:self.calib_samples]).in_memory()  # only those read

    def fold_judged(self, fold: int) -> Dataset:
        assert self.samples is not None and self.folds is not None
        return self.samples.subset(self.folds.judged(fold))

    @cached_property
    def fidelity_set(self) -> Dataset:
        """The samples fidelity is judged on: every calibration sample when cross-fitted, else the evaluation
        data, else the calibration samples themselves (not held back: `judged_by`)."""
        if self.folds is not None and self.samples is not None:
            return self.samples
        return next(d for d in (self.evaluation, self.samples) if d is not None)

    @property
    def judged_by(self) -> str:
        """Which samples judged fidelity, in the manifest's words (CROSS_FITTED, EVALUATION, NOT_HELD_BACK)."""
        if self.folds is not None and self.samples is not None:
            return CROSS_FITTED
        return EVALUATION if self.fidelity_set is self.evaluation else NOT_HELD_BACK

    @cached_property
    def tuning_set(self) -> Dataset:
        """The shipped model's search decisions are made on its own calibration samples (tuning_of), as each
        fold's are on its own (so cross-fitting judges the whole procedure); never the evaluation data."""
        if self.calib is not None:
            return tuning_of(self.calib)
        assert self.evaluation is not None, "a build has --calib or --eval (pipeline.build checks it)"
        return self.evaluation

    @cached_property
    def golden_set(self) -> Dataset:
        return next(d for d in (self.evaluation, self.samples) if d is not None)

    @cached_property
    def holdout(self) -> Dataset | None:
        """Held-back samples for the stages that do not cross-fit (pruning's search, prune/judging.py; `edgekiln
        explain`): the last fold, which `without_holdout` (what those stages fit on) leaves out."""
        return None if self.folds is None else self.fold_judged(self.folds.k - 1)

    @cached_property
    def without_holdout(self) -> Dataset | None:
        """What pruning's recovery and importance scores, and explain's int8 model, fit on: all but `holdout`."""
        return self.calib if self.folds is None else self.fold_calib(self.folds.k - 1)


def tuning_of(calib: Dataset) -> Dataset:
    """The samples a search's own decisions are judged on: the first TUNING_SAMPLES of its calibration samples."""
    return calib.take(0, TUNING_SAMPLES)


def load_datasets(recipe: Recipe, specs: list[InputSpec]) -> Datasets:
    """Read --calib and --eval, and split the calibration data into cross-fitting folds (unless
    holdout_samples is 0 or a fold would have too few samples to calibrate on)."""
    options: dict[str, Any] = {"mean": recipe.mean, "std": recipe.std, "tokenizer": recipe.tokenizer,
                               "seq_len": recipe.seq_len}
    samples = evaluation = folds = None
    if recipe.calib:
        needed = MIN_CALIBRATION_SAMPLES if recipe.quantize in CALIBRATED else 1
        samples = in_model_types(load_data(recipe.calib, specs, role="calibration", min_samples=needed, **options),
                                 specs)
        folds = split(samples.size, MIN_CALIBRATION_SAMPLES) if recipe.holdout_samples else None
    if recipe.eval:
        evaluation = in_model_types(load_data(recipe.eval, specs, role="evaluation", **options), specs)
    return Datasets(samples, evaluation, folds, recipe.calib_samples)


def check_labels(graph: SourceGraph, data: Datasets) -> None:
    """Labels against the classes the model scores, before any conversion: the source model runs one
    sample and its widest output bounds the labels (the exact first output is checked in measure._accuracy)."""
    labelled = [(d, role) for d, role in ((data.evaluation, "evaluation"), (data.samples, "calibration"))
                if d is not None and d.labels is not None]
    if not labelled:
        return
    outputs = graph.run(labelled[0][0].take(0, 1).inputs)
    classes = max(int(np.prod(out.shape[1:])) for out in outputs)
    for dataset, role in labelled:
        check_label_range(dataset, classes, role)


def model_feed(array: np.ndarray) -> np.ndarray:
    """An input array as interpreters take it: integer inputs (token ids, masks) as they are, others float32."""
    return array if array.dtype.kind in "iu" else array.astype(np.float32)
