"""Every bad input: one line on stderr, exit 1, and nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def _build(cli, tiny, out, model=None, calib=None, *extra):
    return cli("build", model or tiny["keras"], "--calib", calib or tiny["calib"], "-o", out, "--runs", "5", *extra)


def _assert_one_line_error(result, out, *fragments):
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_corrupt_model_file(cli, tiny, tmp_path):
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"\x00garbage" * 100)
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", bad), tmp_path / "o", "not a Keras archive")


def test_truncated_keras_file(cli, tiny, tmp_path):
    data = tiny["keras"].read_bytes()
    bad = tmp_path / "truncated.keras"
    bad.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", bad), tmp_path / "o", "truncated")


def test_truncated_h5_file(cli, tiny, tmp_path):
    data = tiny["h5"].read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 3])
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", bad), tmp_path / "o", "not a readable HDF5 file")


def test_wrong_calibration_shape(cli, tiny, tmp_path):
    calib = tmp_path / "wrong.npz"
    np.savez(calib, x=np.zeros((20, 9, 9, 1), np.float32))
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, calib), tmp_path / "o",
                           "expected shape (N, 8, 8, 1), got (20, 9, 9, 1)")


def test_missing_input_name(cli, tiny, tmp_path):
    calib = tmp_path / "named.npz"
    np.savez(calib, pixels=np.zeros((20, 8, 8, 1), np.float32))
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, calib), tmp_path / "o",
                           "lacks input 'image' (its arrays: pixels)")


def test_too_few_calibration_samples(cli, tiny, tmp_path):
    calib = tmp_path / "few.npz"
    np.savez(calib, x=np.zeros((3, 8, 8, 1), np.float32))
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, calib), tmp_path / "o",
                           "has 3 samples, at least 10 are needed")


def test_lambda_layer_is_refused_unless_unsafe(cli, tiny, tmp_path):
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", tiny["lambda"]), tmp_path / "o",
                           "contains a Lambda layer", "--unsafe")
    result = _build(cli, tiny, tmp_path / "ok", tiny["lambda"], None, "--unsafe")
    assert result.exit_code == 0, result.stderr
    assert '"unsafe": true' in (tmp_path / "ok" / "manifest.json").read_text()


def test_existing_output_is_kept(cli, tiny, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    result = _build(cli, tiny, out)
    assert result.exit_code == 1 and "already exists" in result.stderr and "--force" in result.stderr
    assert (out / "manifest.json").read_text() == "{}"


def test_unknown_target(cli, tiny, tmp_path):
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--target", "rpi9"), tmp_path / "o",
                           "unknown target 'rpi9'")


def test_target_without_a_wheel_is_refused(cli, tiny, tmp_path):
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--target", "jetson-nano"),
                           tmp_path / "o", "no wheel for aarch64 / Python 3.6")


def test_model_too_big_for_the_target(cli, tiny, tmp_path):
    import targets

    text = (targets._HERE / "rpi-zero-2w.toml").read_text().replace("ram_budget_mb = 256", "ram_budget_mb = 30")
    tight = tmp_path / "tight.toml"
    tight.write_text(text)
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--target", tight), tmp_path / "o",
                           "budget of 30 MB")


# Issue 13: the four that got through, and every model reader fed truncated, mislabelled and random bytes.

def test_eval_labels_outside_the_models_classes(cli, tiny, tmp_path):
    with np.load(tiny["eval"]) as data:
        x = data["x"]
    bad = tmp_path / "labels42.npz"
    np.savez(bad, x=x, y=np.full(len(x), 42, np.int64))  # the tiny model scores 4 classes
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--eval", bad), tmp_path / "o",
                           f"evaluation data {bad}: labels 'y' range from 42 to 42, but the model's first output "
                           "scores 4 classes (labels 0 to 3)")


def test_negative_max_drop(cli, tiny, tmp_path):
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--max-drop", "-1"), tmp_path / "o",
                           "max_drop must be a number from 0 to 100, got -1")


def test_output_below_a_file(cli, tiny, tmp_path):
    (tmp_path / "some_file").write_text("x")
    result = _build(cli, tiny, tmp_path / "some_file" / "sub")
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot create output {tmp_path / 'some_file' / 'sub'}: {tmp_path / 'some_file'} is a file, "
        "not a directory (choose a path below a directory)"]


def _garbage(tiny, tmp_path, name):
    keras, h5 = tiny["keras"].read_bytes(), tiny["h5"].read_bytes()
    saved_model = tmp_path / "sm"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 50)
    payloads = {
        "random.keras": np.random.default_rng(1).bytes(3000),
        "random.h5": np.random.default_rng(2).bytes(3000),
        "random.onnx": np.random.default_rng(3).bytes(3000),
        "empty.keras": b"",
        "cut10.keras": keras[: len(keras) // 10],
        "cut90.keras": keras[: len(keras) * 9 // 10],
        "cut90.h5": h5[: len(h5) * 9 // 10],
        "npz_named.keras": tiny["calib"].read_bytes(),  # a zip, but not a Keras archive
        "keras_named.h5": keras,
        "h5_named.keras": h5,
        "keras_named.onnx": keras,
    }
    if name == "garbage_saved_model":
        return saved_model
    (tmp_path / name).write_bytes(payloads[name])
    return tmp_path / name


MODEL_FILES = ["random.keras", "random.h5", "random.onnx", "empty.keras", "cut10.keras", "cut90.keras", "cut90.h5",
               "npz_named.keras", "keras_named.h5", "h5_named.keras", "keras_named.onnx", "garbage_saved_model"]


@pytest.mark.parametrize("name", MODEL_FILES)
def test_broken_model_files(cli, tiny, tmp_path, name):
    model = _garbage(tiny, tmp_path, name)
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", model), tmp_path / "o", model.name)


@pytest.mark.parametrize("name", ["random.keras", "cut90.h5", "random.onnx", "garbage_saved_model"])
def test_inspect_broken_model_files(cli, tiny, tmp_path, name):
    model = _garbage(tiny, tmp_path, name)
    result = cli("inspect", model)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and model.name in result.stderr


@pytest.mark.parametrize("payload", [b"", b"TFL3" * 10, b"\x1c\x00\x00\x00TFL3" + bytes(200)])
def test_inspect_broken_tflite(cli, tmp_path, payload):
    path = tmp_path / "m.tflite"
    path.write_bytes(payload)
    result = cli("inspect", path)
    assert result.exit_code == 1 and "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: m.tflite is not a readable .tflite model")
