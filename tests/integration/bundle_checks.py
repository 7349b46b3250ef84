"""Checks every bundle of the real-shaped models passes (test_real_shapes.py, test_real_shapes_onnx.py)."""

from __future__ import annotations

import json
from pathlib import Path

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.evaluate.judge import quality_of

from .conftest import run_runtime

FAST = {"target": "rpi4", "bench_runs": 10, "holdout_samples": 24}


def strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-JSON token {token} in a file edgekiln wrote")
    return json.loads(text, parse_constant=refuse)


def validates(bundle: Path) -> dict:
    """`python -m runtime validate` from inside the bundle passes; manifest and --json outputs are strict JSON.
    (validate --json exits as plain validate does: one run checks both; the plain text is checked elsewhere.)"""
    checked = run_runtime(bundle, "validate", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert strict(checked.stdout)["passed"] is True
    strict(run_runtime(bundle, "info", "--json").stdout)
    return strict((bundle / "manifest.json").read_text())


def meets_floor(manifest: dict) -> None:
    """The shipped model meets the fidelity floor, every output by its kind (a class output by its flips, values
    by SQNR, an embedding by cosine), as the build's rule reads the held-back samples."""
    fidelity = manifest["fidelity"]
    assert fidelity["per_output"], fidelity  # every output is judged: none is left out of the check below
    assert all(output.get("kind") for output in fidelity["per_output"]), fidelity
    rule = Criterion(by_kind=True)
    assert rule.meets(quality_of(fidelity)), rule.shortfall(quality_of(fidelity))
