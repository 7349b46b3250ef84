"""A build stopped by a signal at each of its stages (issue 38, deliverable 3): SIGTERM and Ctrl-C clean up as
they go (one line, exit 128 + the signal, the old bundle intact, no scratch left); after SIGKILL, which nothing can
clean up, what is left is named so that the next run removes it, and that run succeeds. Each build is paused at
the stage (tests/integration/paused_build.py) and the real signal lands there."""

from __future__ import annotations

import shutil
import signal

import pytest

from edgekiln import runtime
from tests.integration.faults import (
    PausedBuild,
    build_args,
    build_env,
    fingerprint,
    left_in_temp,
    names,
    one_line_error,
    run_build,
)

pytestmark = pytest.mark.integration
STAGES = ["Loading", "Reading", "Converting", "Checking", "Measuring", "Profiling", "Writing",
          "swap"]  # the bundle written in its staging folder, not yet renamed in
STOPS = [(signal.SIGTERM, stage) for stage in STAGES] + [(signal.SIGINT, "Converting"), (signal.SIGINT, "swap")]
SAID = {signal.SIGTERM: "error: terminated (SIGTERM); nothing half-written is left",
        signal.SIGINT: "error: interrupted; nothing half-written is left"}


@pytest.mark.parametrize(("number", "stage"), STOPS, ids=[f"{n.name}-{s}" for n, s in STOPS])
def test_a_signal_at_any_stage_ends_cleanly(mlp_bundle, tmp_path, number, stage):
    out = tmp_path / "out" / "bundle"
    shutil.copytree(mlp_bundle["bundle"], out)
    old = fingerprint(out)
    build = PausedBuild(stage, build_args(mlp_bundle, out), build_env(tmp_path / "tmp"), tmp_path / "paused")
    done = build.signal(number)
    assert done.returncode == 128 + number and one_line_error(done) == SAID[number]
    assert fingerprint(out) == old and names(out.parent) == {"bundle"} and not left_in_temp(tmp_path / "tmp")


def test_after_sigkill_the_next_build_cleans_up_and_succeeds(mlp_bundle, tmp_path):
    out, env = tmp_path / "out" / "bundle", build_env(tmp_path / "tmp")
    shutil.copytree(mlp_bundle["bundle"], out)
    old = fingerprint(out)
    for stage in ("Converting", "swap"):  # scratch in $TMPDIR; then also a complete staging folder beside the bundle
        killed = PausedBuild(stage, build_args(mlp_bundle, out), env, tmp_path / "paused").signal(signal.SIGKILL)
        assert killed.returncode == -signal.SIGKILL
    assert fingerprint(out) == old
    left = names(out.parent)
    assert ".bundle.lock" in left and len([n for n in left if n.startswith(".bundle.partial-")]) == 1, left
    # the second run removed the first's scratch folder when it made its own; its own is left for the next
    assert len([n for n in left_in_temp(tmp_path / "tmp") if n.startswith("edgekiln-")]) == 1
    done = run_build(build_args(mlp_bundle, out), env)  # the dead builds' lock is free: flocks die with them
    assert done.returncode == 0, done.stderr[-3000:]
    assert fingerprint(out) != old and runtime.load(out)
    assert names(out.parent) == {"bundle"} and not left_in_temp(tmp_path / "tmp")
