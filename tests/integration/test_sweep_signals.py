"""A sweep stopped by a signal while its workers build (issue 38, deliverable 3): `sweep --jobs 2` and a sweep on a
local Ray, SIGTERM or SIGKILL to the sweep's own process. No process of it outlives it (pgrep after), every saved
point is whole (its row and its bundle) and the points in flight are not saved, so the next run builds exactly
those; a worker killed on its own costs its points a row saying so, and the next run builds them again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from edgekiln.compiler.scratch import OWNER
from tests.integration.faults import build_env, left_in_temp, session_left, start_sweep, sweep_args, wait_for
from tests.system import require

pytestmark = pytest.mark.integration
TWO = {"p00-onnx-float32", "p00-onnx-int8"}  # sweep_args' points
FOUR = TWO | {"p25-onnx-float32", "p25-onnx-int8"}  # with --prune 0,0.25


def _building(tmp: Path, count: int):
    """Condition: `count` points are being built (their workers' scratch folders exist, claimed: the owner file is
    renamed into a folder just after the folder is made)."""
    return lambda: len(list(tmp.glob(f"edgekiln-point-*/{OWNER}"))) >= count


def _saved(out: Path) -> dict[str, dict]:
    """The points saved so far: each row whole JSON, each built one with its bundle beside it."""
    rows = {p.stem: json.loads(p.read_text())["row"] for p in (out / "points").glob("*.json")}
    for name, row in rows.items():
        assert "error" in row or (out / "points" / name / "manifest.json").is_file(), name
    assert not list((out / "points").glob(".*")), "a half-written point or row was left"
    return rows


def _resume(mlp: dict, out: Path, env: dict, saved: dict, *extra: str, prunes: str = "0") -> None:
    """The same sweep again: it builds what was not saved whole, and ends with every point built."""
    points = FOUR if prunes != "0" else TWO
    again = start_sweep(sweep_args(mlp, out, *extra, prunes=prunes), env)
    stdout, stderr = again.communicate(timeout=900)
    assert again.returncode == 0, stderr[-3000:]
    done = json.loads((out / "sweep.json").read_text())
    assert sorted(done["built_now"]) == sorted(points - {n for n, row in saved.items() if "error" not in row})
    assert {p["name"] for p in done["points"] if "error" not in p} == points
    assert session_left(again.pid) == []


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_jobs_2_sweep_stopped_mid_build_leaves_no_process_and_resumes(mlp_bundle, tmp_path, number):
    env, out = build_env(tmp_path / "tmp"), tmp_path / "sweep"
    # four points, not two: with two, the first can be done before the second worker has started (seen under load)
    sweep = start_sweep(sweep_args(mlp_bundle, out, "--jobs", "2", prunes="0,0.25"), env)
    wait_for(_building(tmp_path / "tmp", 2), "two points building at once", sweep)
    os.kill(sweep.pid, number)  # the sweep's own process, not its group: its workers must follow it
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode in (128 + number, -number)
    said = ["error: terminated (SIGTERM); nothing half-written is left"] if number == signal.SIGTERM else []
    assert [line for line in stderr.splitlines() if line.startswith("error: ")] == said
    assert session_left(sweep.pid) == []
    saved = _saved(out)
    assert len([row for row in saved.values() if "error" not in row]) <= 2
    _resume(mlp_bundle, out, env, saved, "--jobs", "2", prunes="0,0.25")
    assert left_in_temp(tmp_path / "tmp") == set()


def test_a_worker_killed_alone_costs_its_points_a_row_and_they_are_built_again(mlp_bundle, tmp_path):
    env, out = build_env(tmp_path / "tmp"), tmp_path / "sweep"
    sweep = start_sweep(sweep_args(mlp_bundle, out, "--jobs", "2", prunes="0,0.25"), env)
    wait_for(_building(tmp_path / "tmp", 1), "a point building", sweep)
    owner = next(tmp_path.glob(f"tmp/edgekiln-point-*/{OWNER}"))
    worker = next(p for p in os.listdir("/proc") if p.isdigit() and _holds(int(p), owner))
    os.kill(int(worker), signal.SIGKILL)
    stdout, stderr = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, stderr[-3000:]
    saved = _saved(out)
    lost = {name for name, row in saved.items() if row.get("retry")}
    assert lost and all(saved[n]["error"].startswith("the worker building it died") for n in lost)
    assert session_left(sweep.pid) == []
    _resume(mlp_bundle, out, env, saved, "--jobs", "2", prunes="0,0.25")


def _holds(pid: int, path: Path) -> bool:
    """Whether process pid has path open (the scratch folder's owner file: the worker building that point)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_sweep_on_local_ray_stopped_mid_build_leaves_no_process(mlp_bundle, tmp_path, number):
    import importlib.util

    require(None if importlib.util.find_spec("ray") else "Ray is not installed: the Ray sweep is untested here")
    env, out = build_env(tmp_path / "tmp"), tmp_path / "sweep"
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's sockets live there (107 chars)
    sweep = start_sweep(sweep_args(mlp_bundle, out, "--jobs", "2", "--executor", "ray"), env)
    wait_for(_building(tmp_path / "tmp", 1), "a point building on Ray", sweep)
    os.kill(sweep.pid, number)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode in (128 + number, -number), stderr[-3000:]
    said = ["error: terminated (SIGTERM); nothing half-written is left"] if number == signal.SIGTERM else []
    assert [line for line in stderr.splitlines() if line.startswith("error: ")] == said
    assert session_left(sweep.pid, grace=60) == []
    _resume(mlp_bundle, out, env, _saved(out), "--jobs", "2", "--executor", "ray")
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
