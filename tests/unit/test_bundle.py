"""The bundle writer is atomic and never clobbers without force."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler import bundle
from edgekiln.compiler.errors import OutputError


def _contents(manifest=None):
    return bundle.BundleContents(b"model-bytes", "tflite", manifest or {"schema_version": 1},
                                 {"input_0": np.zeros((1, 2))}, ["numpy==2.4.6"], "# readme\n")


def test_writes_the_layout(tmp_path):
    out = bundle.write(tmp_path / "b", _contents())
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "golden.npz", "manifest.json", "model.tflite", "report.html", "requirements.txt",
                     "runtime"]
    assert (out / "runtime" / "__init__.py").is_file() and not (out / "runtime" / "__pycache__").exists()
    assert (out / "model.tflite").read_bytes() == b"model-bytes"


def test_existing_output_is_not_clobbered(tmp_path):
    out = bundle.write(tmp_path / "b", _contents())
    with pytest.raises(OutputError, match="already exists") as caught:
        bundle.write(out, _contents({"schema_version": 2}))
    assert "--force" in caught.value.hint
    assert '"schema_version": 1' in (out / "manifest.json").read_text()


def test_force_replaces_and_leaves_no_temporaries(tmp_path):
    out = bundle.write(tmp_path / "b", _contents())
    bundle.write(out, _contents({"schema_version": 2}), force=True)
    assert '"schema_version": 2' in (out / "manifest.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(TypeError):
        bundle.write(tmp_path / "b", _contents({"not json": {1, 2}}))
    assert list(tmp_path.iterdir()) == []


def test_non_bundle_directory_is_never_replaced(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(OutputError, match="is not a bundle"):
        bundle.write(tmp_path / "precious", _contents(), force=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()
