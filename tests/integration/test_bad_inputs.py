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
    from edgekiln import targets

    text = (targets._HERE / "rpi-zero-2w.toml").read_text().replace("ram_budget_mb = 256", "ram_budget_mb = 30")
    tight = tmp_path / "tight.toml"
    tight.write_text(text)
    _assert_one_line_error(_build(cli, tiny, tmp_path / "o", None, None, "--target", tight), tmp_path / "o",
                           "budget of 30 MB")
