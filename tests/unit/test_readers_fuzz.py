"""Every reader of a user's file, fed truncated, mislabelled and random bytes (hypothesis): it either reads
the file into something that satisfies its contract, or raises the project's own error, never a library's
exception (issue 13). The runtime's readers are in test_runtime_fuzz.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgekiln import targets
from edgekiln.compiler.data import load_data
from edgekiln.compiler.deploy.fleet import read_inventory
from edgekiln.compiler.errors import DataError, DeployError, InputModelError, RecipeError
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.compiler.recipe import Recipe, from_toml
from tests.unit import onnx_models

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC = [InputSpec("image", (-1, 4, 4, 1))]


SCRATCH = Path(tempfile.gettempdir()) / f"edgekiln-fuzz-{os.getpid()}"  # hypothesis runs outside tmp_path


@pytest.fixture(autouse=True, scope="module")
def _remove_scratch():
    yield
    shutil.rmtree(SCRATCH, ignore_errors=True)


def _scratch() -> Path:
    SCRATCH.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(dir=SCRATCH))


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


GOOD_X = np.random.default_rng(0).random((6, 4, 4, 1), dtype=np.float32)
GOOD_FILES = {".npz": _npz_bytes(x=GOOD_X, y=np.arange(6)), ".npy": _npy_bytes(GOOD_X)}


def _read_data(payload: bytes, suffix: str) -> None:
    path = _scratch() / f"data{suffix}"
    path.write_bytes(payload)
    try:
        dataset = load_data(path, SPEC, role="evaluation")
    except DataError as exc:
        assert "\n" not in exc.one_line() and str(path) in exc.one_line()
        return
    x = dataset.inputs["image"]  # read: then it satisfies what the model declares
    assert x.shape[1:] == (4, 4, 1) and x.dtype.kind in "fiu" and x.shape[0] >= 1
    assert x.dtype.kind != "f" or np.all(np.isfinite(x))
    if dataset.labels is not None:
        assert dataset.labels.shape == (x.shape[0],) and dataset.labels.dtype.kind in "iu"


@FUZZ
@given(suffix=st.sampled_from([".npz", ".npy"]), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_data_files(suffix, cut):
    data = GOOD_FILES[suffix]
    _read_data(data[: int(len(data) * cut)], suffix)


@FUZZ
@given(suffix=st.sampled_from([".npz", ".npy"]), payload=st.binary(max_size=400))
def test_random_bytes_as_data(suffix, payload):
    _read_data(payload, suffix)


@FUZZ
@given(suffix=st.sampled_from([".npz", ".npy"]), other=st.sampled_from([".npz", ".npy"]),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8))
def test_mislabelled_and_bit_flipped_data(suffix, other, flips):
    data = bytearray(GOOD_FILES[other])  # an .npy named .npz and back, with bytes changed
    for position, value in flips:
        data[position % len(data)] = value
    _read_data(bytes(data), suffix)


ARRAYS = hnp.arrays(dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(),
                                    hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=3)),
                    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
LABELS = hnp.arrays(dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes()),
                    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=8))


@FUZZ
@given(x=st.one_of(ARRAYS, hnp.arrays(np.float64, (3, 4, 4, 1), elements=st.floats(allow_nan=True,
                                                                                     allow_infinity=True))),
       y=st.one_of(st.none(), LABELS), key=st.sampled_from(["x", "image", "pixels"]))
def test_arrays_of_any_dtype_shape_and_value(x, y, key):
    arrays = {key: x} | ({} if y is None else {"y": y})
    _read_data(_npz_bytes(**arrays), ".npz")
    _read_data(_npy_bytes(x), ".npy")


def test_pickled_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="is not a readable .npz file"):
        load_data(path, SPEC, role="calibration")


def test_float64_beyond_float32_is_refused(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.full((2, 4, 4, 1), 1e300))
    with pytest.raises(DataError, match="beyond float32's range"):
        load_data(path, SPEC, role="calibration")


def test_inputs_with_different_sample_counts(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((4, 3)), b=np.zeros((5, 2)))
    with pytest.raises(DataError, match="different numbers of samples"):
        load_data(path, [InputSpec("a", (-1, 3)), InputSpec("b", (-1, 2))], role="calibration")


@FUZZ
@given(payload=st.one_of(st.binary(max_size=300), st.just(GOOD_FILES[".npz"]), st.just(b"\x89PNG\r\n\x1a\n0000")))
def test_image_folder_with_broken_images(payload):
    folder = _scratch()
    for name in ("cat/a.png", "dog/b.jpg"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(payload)
    with pytest.raises(DataError) as caught:
        load_data(folder, SPEC, role="calibration")
    assert "\n" not in caught.value.one_line()


# Recipe TOML: random text, random values for real keys.
TOML_VALUES = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats().map(repr),  # repr: nan, inf are TOML
                        st.booleans().map(lambda b: str(b).lower()), st.text(max_size=8).map(json.dumps),
                        st.just("[1, 2]"), st.just('["a", 3]'), st.just("{ a = 1 }"), st.just("1979-05-27"))
RECIPE_KEYS = [f for f in Recipe.__dataclass_fields__ if f != "source"]


@FUZZ
@given(entries=st.dictionaries(st.sampled_from(RECIPE_KEYS), TOML_VALUES, max_size=4))
def test_recipe_toml_with_random_values(entries):
    path = _scratch() / "r.toml"
    body = "".join(f"{key} = {value}\n" for key, value in entries.items())
    path.write_text('source = "m.keras"\n' + body)
    try:
        recipe = from_toml(path)
    except RecipeError as exc:
        assert "\n" not in exc.one_line()
        return
    assert recipe.to_dict()["source"] == "m.keras" and 0 <= recipe.max_drop <= 100 and recipe.batch >= 1


@FUZZ
@given(payload=st.binary(max_size=200))
def test_recipe_file_of_random_bytes(payload):
    path = _scratch() / "r.toml"
    path.write_bytes(payload)
    try:
        recipe = from_toml(path)
    except RecipeError as exc:  # the only way it may fail: our one-line error, never another exception
        assert exc.one_line() and "\n" not in exc.one_line()
        return
    assert recipe.source  # random bytes that happen to be a valid recipe: a checked one, with its model


# Target TOML: a real target with one value replaced, truncated, or random bytes.
RPI4 = (targets._HERE / "rpi4.toml").read_text()  # noqa: SLF001
TARGET_LINES = [line for line in RPI4.splitlines() if "=" in line and not line.startswith(("[", "#", " "))]


def _load_target(text: str | bytes) -> None:
    path = _scratch() / "board.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        target = targets.load(str(path))
    except targets.TargetFileError as exc:
        assert str(path) in str(exc)
        return
    assert target.cores >= 1 and 1 <= target.ram_budget_mb <= target.ram_mb and target.default_threads >= 1
    assert target.default_format in ("tflite", "onnx")


@FUZZ
@given(line=st.sampled_from(TARGET_LINES), value=TOML_VALUES)
def test_target_with_one_random_value(line, value):
    key = line.split("=")[0].strip()
    _load_target(RPI4.replace(line, f"{key} = {value}", 1))


@FUZZ
@given(cut=st.floats(0, 1), payload=st.binary(max_size=100))
def test_truncated_or_random_target_file(cut, payload):
    _load_target(RPI4[: int(len(RPI4) * cut)])
    _load_target(payload)


def test_target_values_out_of_range():
    for old, new, message in [("ram_budget_mb = 640", "ram_budget_mb = 99999", "exceeds ram_mb"),
                              ("cores = 4", "cores = 0", "'cores' must be at least 1"),
                              ("cores = 4", "cores = true", "'cores' must be int"),
                              ('default_format = "tflite"', 'default_format = "pb"', "'default_format' must be one of"),
                              ('python = "3.11"', 'python = "three"', "'python' must be MAJOR.MINOR")]:
        assert old in RPI4, old
        path = _scratch() / "board.toml"
        path.write_text(RPI4.replace(old, new, 1))
        with pytest.raises(targets.TargetFileError, match=message):
            targets.load(str(path))


# ONNX models: truncated, bit-flipped, random bytes.
ONNX_BYTES = onnx_models.conv_net().SerializeToString()


def _load_onnx(payload: bytes) -> None:
    from edgekiln.compiler.graph import onnx_graph

    work = _scratch()
    (work / "m.onnx").write_bytes(payload)
    try:
        graph = onnx_graph.load(work / "m.onnx", work)
        assert graph.inputs and graph.output_names  # read: it runs, or says in one line why not
        graph.run({s.name: np.zeros([max(d, 1) for d in s.shape], np.float32) for s in graph.inputs})
    except InputModelError as exc:
        assert "\n" not in exc.one_line()


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_onnx(cut):
    _load_onnx(ONNX_BYTES[: int(len(ONNX_BYTES) * cut)])


@FUZZ
@given(payload=st.one_of(st.binary(max_size=300), st.just(GOOD_FILES[".npz"]), st.just(RPI4.encode())))
def test_random_or_mislabelled_bytes_as_onnx(payload):
    _load_onnx(payload)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
@example(flips=[(1473, 1)])  # a kernel's channel count: loads and checks fine, cannot run
def test_bit_flipped_onnx(flips):
    data = bytearray(ONNX_BYTES)
    for position, value in flips:
        data[position % len(data)] = value
    _load_onnx(bytes(data))


@FUZZ
@given(payload=st.binary(max_size=200))
@example(payload=b"pi@kitchen\n# the lab\n\n  lab-2:2222  # spare\nroot@[fe80::1]:22\n")
def test_inventory_of_random_bytes(payload):
    path = _scratch() / "hosts.txt"
    path.write_bytes(payload)
    try:
        found = read_inventory(path)
    except DeployError as exc:
        assert "\n" not in exc.one_line()
        return
    # read: one device per line that is not blank or a comment, each the host written on that line
    lines = [line for raw in path.read_text().splitlines() if (line := raw.split("#", 1)[0].strip())]
    assert len(found) == len(lines), (found, lines)
    for device, line in zip(found, lines, strict=True):
        assert device.host and device.host in line and (device.port is None or 0 < device.port < 65536), line
        assert device.user is None or line.startswith(f"{device.user}@"), line
