"""Data larger than memory (issue 38, D6): a big .npy stays memory-mapped and is read in batches of bounded bytes;
an .npz (a zip, which cannot be mapped) gets a hint; the batched results are those of one call on the whole data."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgekiln.compiler import batches, data
from edgekiln.compiler.data import Datasets, load_data
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.folds import split
from edgekiln.compiler.model_inputs import Dataset, InputSpec

SPEC = [InputSpec("x", (-1, 64))]  # 256 bytes a sample


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 1 KiB (4 samples of SPEC) and a mapping threshold of 4 KiB, so that tiny files take the paths of
    big ones."""
    monkeypatch.setattr(batches, "BATCH_BYTES", 1024)
    monkeypatch.setattr(data, "MAP_ABOVE_BYTES", 4096)


def _npy(tmp_path, samples: int) -> tuple[np.ndarray, object]:
    x = np.random.default_rng(0).normal(size=(samples, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return x, tmp_path / "x.npy"


def test_a_big_npy_stays_memory_mapped_and_a_small_one_is_read(tmp_path, small_batches):
    x, path = _npy(tmp_path, 100)  # 25.6 KB: above the threshold
    big = load_data(path, SPEC, role="evaluation").inputs["x"]
    assert isinstance(big, np.memmap) and np.array_equal(big, x)
    x, path = _npy(tmp_path, 10)  # 2.56 KB: below
    small = load_data(path, SPEC, role="evaluation").inputs["x"]
    assert not isinstance(small, np.memmap) and np.array_equal(small, x)


def test_a_model_run_in_batches_gives_what_one_call_gives(tmp_path, small_batches):
    x, path = _npy(tmp_path, 103)  # 26 batches of 4, the last one short
    mapped = load_data(path, SPEC, role="evaluation").inputs["x"]
    seen: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.append(feed["x"].shape[0])
        return [feed["x"].sum(axis=1), np.tanh(feed["x"][:, :3])]

    outputs = batches.in_batches(run, {"x": mapped}, "judging")
    assert seen == [4] * 25 + [3]
    assert np.array_equal(outputs[0], x.sum(axis=1)) and np.array_equal(outputs[1], np.tanh(x[:, :3]))


def test_the_data_checks_read_in_batches_and_still_find_a_bad_value_in_the_last_one(tmp_path, small_batches):
    x, _ = _npy(tmp_path, 100)
    x[97, 5] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match="contains NaN or infinite values"):
        load_data(tmp_path / "nan.npy", SPEC, role="calibration")
    ids = np.arange(100 * 64, dtype=np.int64).reshape(100, 64)
    ids[99, 63] = 2**40
    np.save(tmp_path / "ids.npy", ids)
    with pytest.raises(DataError, match=f"values 0 .. {2**40} do not fit the model's int32"):
        load_data(tmp_path / "ids.npy", [InputSpec("x", (-1, 64), "int32")], role="calibration")


def test_folds_of_a_mapped_file_are_views_and_calibration_reads_only_its_samples(tmp_path, small_batches):
    x, path = _npy(tmp_path, 100)
    samples = load_data(path, SPEC, role="calibration")
    sets = Datasets(samples, None, split(samples.size, 10), calib_samples=16)
    judged = sets.fold_judged(1).inputs["x"]
    assert np.shares_memory(judged, samples.inputs["x"]) and np.array_equal(judged, x[1::2])
    calib = sets.fold_calib(1).inputs["x"]  # fold 1 calibrates on fold 0's first 16 samples, read into memory
    assert not isinstance(calib, np.memmap) and np.array_equal(calib, x[0:32:2])
    assert not isinstance(sets.calib.inputs["x"], np.memmap) and np.array_equal(sets.calib.inputs["x"], x[:16])


def test_rows_not_evenly_spaced_are_copied(tmp_path, small_batches):
    x, path = _npy(tmp_path, 100)
    mapped = load_data(path, SPEC, role="calibration")
    rows = np.array([3, 4, 9])
    picked = mapped.subset(rows).inputs["x"]
    assert not np.shares_memory(picked, mapped.inputs["x"]) and np.array_equal(picked, x[rows])
    in_memory = Dataset({"x": x}, None, "x")
    assert not np.shares_memory(in_memory.subset(np.arange(0, 100, 2)).inputs["x"], x)  # as before: a copy


def test_a_big_npz_gets_a_one_line_hint_to_use_npy(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "NPZ_HINT_BYTES", 1000)
    np.savez(tmp_path / "big.npz", x=np.zeros((100, 64), np.float32))
    np.savez(tmp_path / "small.npz", x=np.zeros((2, 64), np.float32))
    load_data(tmp_path / "small.npz", SPEC, role="calibration")
    assert capsys.readouterr().err == ""
    load_data(tmp_path / "big.npz", SPEC, role="calibration")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"hint: calibration data big\.npz is \d+ MB of \.npz, a zip, which is read "
                                            r"whole into memory; save each array with np\.save as \.npy to have it "
                                            r"read in batches", lines[0]), lines


def test_short_passes_print_no_progress_off_a_terminal(tmp_path, small_batches, capsys):
    _, path = _npy(tmp_path, 100)
    mapped = load_data(path, SPEC, role="evaluation").inputs["x"]
    outputs = batches.in_batches(lambda feed: [feed["x"][:, :1].copy()], {"x": mapped}, "judging")
    assert outputs[0].shape == (100, 1)
    assert capsys.readouterr().err == ""  # not a terminal, and far shorter than PROGRESS_AFTER_S


def test_a_big_npy_not_in_the_models_type_gets_a_hint_and_is_converted(tmp_path, small_batches, capsys):
    x = np.random.default_rng(0).normal(size=(100, 64))  # float64, the model takes float32
    np.save(tmp_path / "x64.npy", x)
    samples = data.load_datasets(_recipe(tmp_path / "x64.npy"), SPEC).samples
    assert samples is not None and samples.inputs["x"].dtype == np.float32
    assert np.array_equal(samples.inputs["x"], x.astype(np.float32))
    assert capsys.readouterr().err.splitlines() == [
        "hint: calibration data x64.npy is float64, the model takes float32: it is converted whole, in memory; save "
        "it as float32 to have it read in batches"]


def _recipe(calib):
    from edgekiln.compiler.recipe import Recipe

    return Recipe(source="m.onnx", calib=str(calib))


def test_profile_reads_its_calibration_sample_through_the_builds_loader(tmp_path, small_batches, monkeypatch):
    """`edgekiln profile MODEL.tflite --calib big.npy` maps the file as a build does and reads only its first
    sample; a file the loader cannot read gets the loader's one-line error."""
    from edgekiln.compiler.commands.profile import _sample

    opened: list[object] = []  # what the build's loader returned (the real one, recorded)

    def recorded(path, role, kind):
        opened.append(real_np_load(path, role, kind))
        return opened[-1]

    real_np_load = data._np_load
    monkeypatch.setattr(data, "_np_load", recorded)
    x, path = _npy(tmp_path, 100)  # 25.6 KB: above the threshold
    (sample,) = _sample(path)
    assert len(opened) == 1 and isinstance(opened[0], np.memmap)  # mapped: only the sample read is in memory
    assert sample.dtype == np.float32 and np.array_equal(sample, x[:1])
    np.savez(tmp_path / "two.npz", a=x[:3], y=np.arange(3), b=2 * x[:3])
    assert [a.tolist() for a in _sample(tmp_path / "two.npz")] == [x[:1].tolist(), (2 * x[:1]).tolist()]
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match=r"calibration data .*bad\.npy is not a readable \.npy file"):
        _sample(tmp_path / "bad.npy")
    with pytest.raises(DataError, match=r"is not an \.npz or \.npy file"):
        _sample(tmp_path / "missing.npy")
