"""`edgekiln sweep` end to end on the tiny model: 2 prune settings x 2 variants, one of the two sweeps killed
for real after two points and resumed; the front, the choice, the rebuilt recipe, and Ray against one job."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgekiln.compiler.pipeline import build
from edgekiln.compiler.recipe import Recipe, from_toml
from edgekiln.compiler.sweep import SweepOptions, run_sweep
from tests.system import require

pytestmark = pytest.mark.integration
PRUNES, VARIANTS = [0.0, 0.5], ["float32", "int8"]
FAST = {"target": "rpi4", "bench_runs": 7, "recover": "reconstruct"}  # as the CLI line below says


def _base(tiny: dict, out: Path) -> Recipe:
    return Recipe(source=str(tiny["keras"]), calib=str(tiny["calib"]), eval=str(tiny["eval"]), output=str(out),
                  **FAST)


def _kill_after(folder: Path, tiny: dict, finished: int) -> dict[str, dict]:
    """Start the CLI sweep, SIGKILL it once `finished` points are saved; the saved points' files by then."""
    command = [sys.executable, "-m", "edgekiln.compiler.cli", "sweep", str(tiny["keras"]), "-o", str(folder),
               "--calib", str(tiny["calib"]), "--eval", str(tiny["eval"]), "--prune", "0,0.5",
               "--quantize", "float32,int8", "--format", "tflite", "--recover", "reconstruct", "--runs", "7"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while len(list((folder / "points").glob("*.json"))) < finished:
            assert process.poll() is None and time.monotonic() < deadline, "the sweep ended before it was killed"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return {p.stem: json.loads(p.read_text()) for p in (folder / "points").glob("*.json")}


@pytest.fixture(scope="module")
def swept(tiny, tmp_path_factory) -> tuple[Path, dict, dict]:
    folder = tmp_path_factory.mktemp("sweep") / "s"
    saved = _kill_after(folder, tiny, 2)
    result = run_sweep(SweepOptions(_base(tiny, folder), PRUNES, VARIANTS, ["tflite"]))
    return folder, result, saved


def test_a_killed_sweep_resumes_and_builds_only_the_rest(swept):
    folder, result, saved = swept
    assert len(saved) >= 2 and sorted(result["reused"]) == sorted(saved), saved  # (the rows say why, if not)
    assert sorted(result["reused"] + result["built_now"]) == sorted(p["name"] for p in result["points"])
    assert len(result["points"]) == 4 and not [p for p in result["points"] if "error" in p]
    assert not list(folder.glob("**/.*.partial"))  # nothing half-written left behind


def test_the_front_is_non_dominated_and_the_choice_obeys_the_rule(swept):
    folder, result, _ = swept
    rows, axis = result["points"], result["latency"]

    def beats(a, b):
        no_worse = a[axis] <= b[axis] and a["accuracy"] >= b["accuracy"] and a["bytes"] <= b["bytes"]
        return no_worse and (a[axis] < b[axis] or a["accuracy"] > b["accuracy"] or a["bytes"] < b["bytes"])

    assert {r["name"] for r in rows if r["on_front"]} == {b["name"] for b in rows if not any(beats(a, b) for a in rows)}
    within = [r for r in rows if r["accuracy_drop"] <= result["max_drop"]]
    assert [r["name"] for r in rows if r["within_budget"]] == [r["name"] for r in within]
    assert within, rows  # never empty here: the unpruned float32 point is the source model, converted
    chosen = next(r for r in rows if r["name"] == result["chosen"])
    margin = result["evidence"]["margin"]
    assert chosen in within and chosen[axis] <= min(r[axis] for r in within) * margin
    assert json.loads((folder / "sweep.json").read_text(), parse_constant=pytest.fail) == result
    assert all(r["p50_ms"] > 0 and r["timed_runs"] >= 7 * 3 for r in rows)  # all timed here, in rounds
    assert "Sweep front" in (folder / "report.html").read_text()


def test_the_chosen_bundle_is_the_points_and_its_recipe_rebuilds_it(swept, tmp_path):
    folder, result, _ = swept
    name = result["chosen"]
    assert _files(folder / "bundle") == _files(folder / "points" / name)
    rebuilt = build(from_toml(folder / "points" / f"{name}.toml", output=str(tmp_path / "again")))
    point = next(r for r in result["points"] if r["name"] == name)
    assert rebuilt.manifest["model"]["sha256"] == point["sha256"]


def test_ray_builds_the_same_points_as_one_job(swept, tiny, tmp_path):
    require(None if importlib.util.find_spec("ray") else "Ray is not installed: pip install -e '.[ray]'")
    _, result, _ = swept
    ray = run_sweep(SweepOptions(_base(tiny, tmp_path / "ray"), [0.5], ["int8"], ["tflite"], jobs=2,
                                 executor="ray"))
    same = {r["name"]: r for r in result["points"]}
    columns = ("sha256", "bytes", "accuracy", "params", "macs", "variant")
    assert len(ray["points"]) == 1 and ray["points"][0]["name"] in same, ray["points"]  # prune 0.5 x int8
    for row in ray["points"]:
        assert {c: row[c] for c in columns} == {c: same[row["name"]][c] for c in columns}


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_student_is_one_more_point_on_the_front(tiny, tmp_path):
    """--distill 1,0.5: beside the model's own point, a student of half its width, built with `build --distill`."""
    base = _base(tiny, tmp_path / "s").replace(train=str(tiny["eval"]))
    result = run_sweep(SweepOptions(base, [0.0], ["int8"], ["tflite"], students=[1.0, 0.5]))
    rows = {r["name"]: r for r in result["points"]}
    assert sorted(rows) == ["p00-tflite-int8", "p00-tflite-int8-s50"], rows
    own, student = rows["p00-tflite-int8"], rows["p00-tflite-int8-s50"]
    assert (own["student"], student["student"]) == (1.0, 0.5) and "error" not in student, student
    assert student["macs"] < own["macs"] and student["params"] < own["params"]  # the student's model shipped
    manifest = json.loads((tmp_path / "s" / "points" / "p00-tflite-int8-s50" / "manifest.json").read_text())
    assert manifest["distillation"]["width"] == 0.5
    assert from_toml(tmp_path / "s" / "points" / "p00-tflite-int8-s50.toml", output="x").distill == 0.5
    assert all("on_front" in r for r in rows.values())  # both judged on one front
