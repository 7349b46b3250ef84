"""Faults while a build runs, each for real (issue 38, deliverable 3): the disk fills while the bundle is written
(a tmpfs too small for old and new), a second build to the same -o, the output's folder made read-only or removed
mid-build. Each ends in one line and a non-zero exit, the old bundle intact and nothing half-written left."""

from __future__ import annotations

import shutil

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
    remount,
    run_build,
    tmpfs,
    used_bytes,
)

pytestmark = pytest.mark.integration


def test_a_full_disk_fails_in_one_line_and_keeps_the_old_bundle(mlp_bundle, tmp_path):
    with tmpfs(tmp_path / "disk", 4 << 20) as disk:
        shutil.copytree(mlp_bundle["bundle"], disk / "bundle")
        old, used = fingerprint(disk / "bundle"), used_bytes(disk)
        remount(disk, f"size={used + used // 2}")  # room for half a second bundle: the new one cannot fit
        done = run_build(build_args(mlp_bundle, disk / "bundle"), build_env(tmp_path / "tmp"))
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "No space left on device" in one_line_error(done)
        assert fingerprint(disk / "bundle") == old
        assert names(disk) == {"bundle"} and used_bytes(disk) == used  # the staging folder and the lock are gone
    assert not left_in_temp(tmp_path / "tmp")


def test_a_second_build_to_the_same_output_is_refused_as_busy(mlp_bundle, tmp_path):
    out, env = tmp_path / "out" / "bundle", build_env(tmp_path / "tmp")
    shutil.copytree(mlp_bundle["bundle"], out)
    old = fingerprint(out)
    first = PausedBuild("Measuring", build_args(mlp_bundle, out), env, tmp_path / "paused")
    second = run_build(build_args(mlp_bundle, out), env)  # while the first holds the output
    line = one_line_error(second)
    assert second.returncode == 1 and f"output {out} is busy" in line and f"pid {first.process.pid}" in line, line
    assert fingerprint(out) == old
    done = first.resume()
    assert done.returncode == 0, done.stderr[-3000:]
    assert fingerprint(out) != old and runtime.load(out)  # the first build's whole bundle (its sha256 checked)
    assert names(out.parent) == {"bundle"} and not left_in_temp(tmp_path / "tmp")


def test_a_folder_made_read_only_mid_build_fails_in_one_line(mlp_bundle, tmp_path):
    with tmpfs(tmp_path / "disk", 4 << 20) as disk:
        shutil.copytree(mlp_bundle["bundle"], disk / "bundle")
        old = fingerprint(disk / "bundle")
        build = PausedBuild("Writing", build_args(mlp_bundle, disk / "bundle"), build_env(tmp_path / "tmp"),
                            tmp_path / "paused")
        remount(disk, "ro")
        done = build.resume()
        assert done.returncode == 1 and "Read-only file system" in one_line_error(done)
        remount(disk, "rw")
        assert fingerprint(disk / "bundle") == old
        # nothing can be removed from a read-only folder: the empty lock stays, and the next build takes it over
        assert names(disk) == {"bundle", ".bundle.lock"}
    assert not left_in_temp(tmp_path / "tmp")


def test_the_output_folder_removed_mid_build_fails_in_one_line(mlp_bundle, tmp_path):
    out = tmp_path / "out" / "bundle"
    shutil.copytree(mlp_bundle["bundle"], out)
    build = PausedBuild("Writing", build_args(mlp_bundle, out), build_env(tmp_path / "tmp"), tmp_path / "paused")
    shutil.rmtree(out.parent)
    done = build.resume()
    assert done.returncode == 1
    assert one_line_error(done) == (f"error: the folder {out.parent} was removed during the build; nothing was "
                                    "written (build again)")
    assert not out.parent.exists() and not left_in_temp(tmp_path / "tmp")
