"""The bundle runtime's readers (manifest.json, golden.npz, the model file) fed truncated, mislabelled and
random content: runtime.BundleError, and from `python -m runtime` one line and exit 1, never a traceback.

The bundle is made by hand from a tiny ONNX model (no TensorFlow), laid out as `edgekiln build` writes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekiln import runtime
from tests.conftest import ROOT
from tests.unit import onnx_models

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODEL = onnx_models.conv_net(batch=1).SerializeToString()


def _golden_bytes() -> bytes:
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    y = np.concatenate([runtime.Model("onnx", MODEL).predict(x[i : i + 1]) for i in range(3)])
    buffer = io.BytesIO()
    np.savez(buffer, input_0=x, output_0=y)
    return buffer.getvalue()


GOLDEN = _golden_bytes()
MANIFEST = {"schema_version": 1, "model": {"file": "model.onnx", "format": "onnx",
                                           "sha256": hashlib.sha256(MODEL).hexdigest(), "inputs": [], "outputs": []},
            "golden": {"file": "golden.npz", "samples": 3, "atol": 1e-4, "rtol": 1e-3},
            "target": {"name": "x86-64", "default_threads": 1}}


SCRATCH = Path(tempfile.gettempdir()) / f"edgekiln-fuzz-{os.getpid()}"  # hypothesis runs outside tmp_path


@pytest.fixture(autouse=True, scope="module")
def _remove_scratch():
    yield
    shutil.rmtree(SCRATCH, ignore_errors=True)


def _bundle(manifest: object = None, golden: bytes = GOLDEN, model: bytes = MODEL, manifest_text: str | None = None,
            with_runtime: bool = False) -> Path:
    SCRATCH.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=SCRATCH))
    (root / "model.onnx").write_bytes(model)
    (root / "golden.npz").write_bytes(golden)
    text = manifest_text if manifest_text is not None else json.dumps(MANIFEST if manifest is None else manifest)
    (root / "manifest.json").write_text(text)
    if with_runtime:
        shutil.copytree(ROOT / "runtime", root / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _validate(bundle: Path) -> None:
    """Either a full validation report, or the runtime's own error naming a file of the bundle."""
    try:
        report = runtime.load(bundle).validate()
    except runtime.BundleError as exc:
        assert "\n" not in str(exc) and (str(bundle) in str(exc) or "model.onnx" in str(exc)), str(exc)
        return
    assert report.samples  # read: every golden sample was compared


def test_the_hand_made_bundle_validates():
    assert runtime.load(_bundle()).validate().passed


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncated_golden(cut):
    _validate(_bundle(golden=GOLDEN[: int(len(GOLDEN) * cut)]))


@FUZZ
@given(payload=st.one_of(st.binary(max_size=300), st.just(MODEL), st.just(json.dumps(MANIFEST).encode())))
def test_random_or_mislabelled_golden(payload):
    _validate(_bundle(golden=payload))


ARRAYS = st.sampled_from([np.zeros((3, 3, 8, 8), np.float32), np.zeros((3, 8, 8, 3), np.float32),
                          np.zeros((0, 3, 8, 8), np.float32), np.zeros((3, 3, 8), np.float32),
                          np.array(["a", "b", "c"]), np.zeros(3, bool), np.float32(1.0), np.zeros((2, 2), np.float32)])


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["input_0", "output_0", "input_1", "x"]), ARRAYS, max_size=3))
def test_golden_arrays_that_do_not_fit_the_model(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _validate(_bundle(golden=buffer.getvalue()))


def test_golden_with_a_pickle_is_refused():
    buffer = io.BytesIO()
    np.savez(buffer, input_0=np.array([{"a": 1}], dtype=object), output_0=np.zeros((1, 2), np.float32))
    with pytest.raises(runtime.BundleError, match="golden.npz is truncated or not an .npz file"):
        runtime.load(_bundle(golden=buffer.getvalue())).validate()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=3), max_leaves=6)
MANIFEST_KEYS = [("model", "file"), ("model", "format"), ("model", "sha256"), ("model", "inputs"),
                 ("golden", "file"), ("golden", "atol"), ("golden", "rtol"), ("target", "default_threads"),
                 ("model", None), ("golden", None), ("target", None)]


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(MANIFEST_KEYS), JSON_VALUES), min_size=1, max_size=3))
def test_manifest_with_random_values(changes):
    manifest = json.loads(json.dumps(MANIFEST))
    for (section, key), value in changes:
        if key is None:
            manifest[section] = value
        elif isinstance(manifest.get(section), dict):
            manifest[section][key] = value
    _validate(_bundle(manifest))


@FUZZ
@given(cut=st.floats(0, 1, exclude_max=True), payload=st.binary(max_size=200))
def test_truncated_or_random_manifest(cut, payload):
    text = json.dumps(MANIFEST)
    _validate(_bundle(manifest_text=text[: int(len(text) * cut)]))
    bundle = _bundle()
    (bundle / "manifest.json").write_bytes(payload)
    _validate(bundle)


def test_manifest_naming_a_file_outside_the_bundle():
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["model"]["file"] = "../../etc/passwd"
    with pytest.raises(runtime.BundleError, match="model.file must name a file inside the bundle"):
        runtime.load(_bundle(manifest))


@FUZZ
@given(payload=st.one_of(st.binary(max_size=300), st.just(GOLDEN), st.just(MODEL[: len(MODEL) // 2])))
def test_model_file_the_interpreter_cannot_open(payload):
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["model"]["sha256"] = hashlib.sha256(payload).hexdigest()  # checksum passes: the interpreter decides
    for model_format in ("onnx", "tflite"):
        manifest["model"]["format"] = model_format
        _validate(_bundle(manifest, model=payload))


def _truncated_golden() -> Path:
    return _bundle(golden=GOLDEN[: len(GOLDEN) // 2], with_runtime=True)


def _tampered_model() -> Path:
    bundle = _bundle(with_runtime=True)
    (bundle / "model.onnx").write_bytes(MODEL[:-1] + b"\x00")
    return bundle


def _manifest_not_json() -> Path:
    return _bundle(manifest_text='{"model": ', with_runtime=True)


def _manifest_a_list() -> Path:
    return _bundle(manifest_text="[1, 2]", with_runtime=True)


def _golden_for_another_model() -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, input_0=np.zeros((2, 1, 28, 28), np.float32), output_0=np.zeros((2, 10), np.float32))
    return _bundle(golden=buffer.getvalue(), with_runtime=True)


def _golden_missing() -> Path:
    bundle = _bundle(with_runtime=True)
    (bundle / "golden.npz").unlink()
    return bundle


CLI_CASES = [
    (_truncated_golden, ["validate"], "golden.npz is truncated or not an .npz file (BadZipFile): copy the bundle "
                                      "again from the build host, or rebuild it with `edgekiln build`"),
    (_truncated_golden, ["bench", "--runs", "2"], "golden.npz is truncated or not an .npz file"),
    (_tampered_model, ["validate"], "the model was changed; refusing to load it"),
    (_manifest_not_json, ["info"], "manifest.json is not valid JSON"),
    (_manifest_a_list, ["validate"], "manifest.json is not a bundle manifest: it lacks the 'model' and 'golden'"),
    (_golden_for_another_model, ["validate"], "golden.npz: input_0 has shape (1, 1, 28, 28), the model's is "
                                              "(1, 3, 8, 8)"),
    (_golden_missing, ["validate"], "golden.npz is truncated or not an .npz file (FileNotFoundError)"),
]


@pytest.mark.parametrize(("make", "args", "message"), CLI_CASES, ids=[c[0].__name__.strip("_") for c in CLI_CASES])
def test_python_m_runtime_says_one_line(make, args, message):
    bundle = make()
    result = subprocess.run([sys.executable, "-m", "runtime", *args], cwd=bundle, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("args", [["bench", "--runs", "0"], ["bench", "--threads", "0"], ["bench", "--warmup", "-1"]])
def test_runtime_numbers_out_of_range_are_usage_errors(args):
    result = subprocess.run([sys.executable, "-m", "runtime", *args], cwd=_bundle(with_runtime=True),
                            capture_output=True, text=True)
    assert result.returncode == 2 and "must be at least" in result.stderr and "Traceback" not in result.stderr
