"""Calibration / evaluation data: every format, and every mistake gets one clear message."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgekiln.compiler.data import load_data
from edgekiln.compiler.errors import DataError
from edgekiln.compiler.model_inputs import InputSpec

IMAGE = [InputSpec("image", (-1, 8, 8, 1))]


def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_npz_with_x_and_labels(tmp_path):
    x = np.random.default_rng(0).random((12, 8, 8, 1), dtype=np.float32)
    data = load_data(_npz(tmp_path, x=x, y=np.arange(12)), IMAGE, role="evaluation")
    assert data.size == 12 and np.array_equal(data.inputs["image"], x)
    assert data.labels is not None and data.labels[-1] == 11


def test_npz_keyed_by_input_name_for_two_inputs(tmp_path):
    specs = [InputSpec("a", (-1, 3)), InputSpec("b", (-1, 2))]
    data = load_data(_npz(tmp_path, a=np.zeros((4, 3)), b=np.ones((4, 2))), specs, role="calibration")
    assert data.inputs["b"].shape == (4, 2)


def test_missing_input_name_is_named(tmp_path):
    specs = [InputSpec("a", (-1, 3)), InputSpec("b", (-1, 2))]
    with pytest.raises(DataError, match=r"lacks input 'b' \(its arrays: a\)"):
        load_data(_npz(tmp_path, a=np.zeros((4, 3))), specs, role="calibration")


def test_wrong_shape_names_expected_and_given(tmp_path):
    with pytest.raises(DataError, match=r"expected shape \(N, 8, 8, 1\), got \(5, 8, 8, 3\)"):
        load_data(_npz(tmp_path, x=np.zeros((5, 8, 8, 3))), IMAGE, role="calibration")


def test_channels_first_data_gets_a_layout_hint(tmp_path):
    specs = [InputSpec("image", (-1, 8, 8, 3))]
    with pytest.raises(DataError, match="channels-first vs channels-last"):
        load_data(_npz(tmp_path, x=np.zeros((5, 3, 8, 8))), specs, role="calibration")


def test_too_few_samples(tmp_path):
    with pytest.raises(DataError, match="has 3 samples, at least 10 are needed"):
        load_data(_npz(tmp_path, x=np.zeros((3, 8, 8, 1))), IMAGE, role="calibration", min_samples=10)


def test_non_numeric_and_non_finite_data(tmp_path):
    with pytest.raises(DataError, match="dtype <U1 is not numeric"):
        load_data(_npz(tmp_path, x=np.full((2, 8, 8, 1), "a")), IMAGE, role="calibration")
    bad = np.zeros((2, 8, 8, 1))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        load_data(_npz(tmp_path, x=bad), IMAGE, role="calibration")


def test_labels_must_match_samples(tmp_path):
    with pytest.raises(DataError, match=r"labels 'y' must be integers of shape \(4,\)"):
        load_data(_npz(tmp_path, x=np.zeros((4, 8, 8, 1)), y=np.zeros(3, int)), IMAGE, role="evaluation")


def test_npy_file(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((6, 8, 8, 1), np.float32))
    assert load_data(tmp_path / "c.npy", IMAGE, role="calibration").size == 6


def test_not_an_npz(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_data(path, IMAGE, role="calibration")


def test_image_folder_is_resized_normalised_and_labelled(tmp_path):
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (16, 12), (value, value, value)).save(tmp_path / label / f"{i}.png")
    data = load_data(tmp_path, IMAGE, role="calibration", mean=(0.5,), std=(0.5,))
    assert data.inputs["image"].shape == (4, 8, 8, 1)
    assert np.allclose(data.inputs["image"][:2], -1.0) and np.allclose(data.inputs["image"][2:], 1.0)
    assert data.labels is not None and list(data.labels) == [0, 0, 1, 1]


def test_empty_image_folder(tmp_path):
    with pytest.raises(DataError, match="has no PNG/JPEG images"):
        load_data(tmp_path, IMAGE, role="calibration")


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "nope.npz", IMAGE, role="calibration")


TOKENS = [InputSpec("input_ids", (-1, 16), "int32")]


def test_token_ids_stay_integers_of_the_models_type(tmp_path):
    from edgekiln.compiler.data import in_model_types

    ids = np.random.default_rng(1).integers(0, 30000, (6, 16))  # int64, as numpy makes them
    data = in_model_types(load_data(_npz(tmp_path, x=ids), TOKENS, role="calibration"), TOKENS)
    assert data.inputs["input_ids"].dtype == np.int32 and np.array_equal(data.inputs["input_ids"], ids)
    float_model = in_model_types(load_data(_npz(tmp_path, x=ids), [InputSpec("input_ids", (-1, 16))],
                                       role="calibration"), [InputSpec("input_ids", (-1, 16))])
    assert float_model.inputs["input_ids"].dtype == np.float32  # a float input gets float32, as before


def test_float_data_for_an_integer_input_is_refused_with_the_type_to_store(tmp_path):
    with pytest.raises(DataError, match=r"input 'input_ids': the model takes int32 \(e\.g\. token ids\) but the "
                                        r"data are float32"):
        load_data(_npz(tmp_path, x=np.zeros((4, 16), np.float32)), TOKENS, role="calibration")


def test_token_ids_beyond_the_inputs_integer_type_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"values 0 \.\. 4294967296 do not fit the model's int32"):
        load_data(_npz(tmp_path, x=np.array([[0] * 15 + [2**32]] * 2)), TOKENS, role="calibration")


def test_model_feed_keeps_integers_and_makes_the_rest_float32():
    from edgekiln.compiler.data import model_feed

    assert model_feed(np.arange(3, dtype=np.int64)).dtype == np.int64
    assert model_feed(np.arange(3, dtype=np.float64)).dtype == np.float32
