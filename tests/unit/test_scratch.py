"""Scratch folders of dead runs are removed by the next run, live ones and others' never (compiler/scratch.py)."""

from __future__ import annotations

import fcntl
import os

from edgekiln.compiler import scratch


def test_only_folders_whose_owner_died_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(scratch.tempfile, "tempdir", None)  # re-read TMPDIR
    for name in ("edgekiln-dead", "edgekiln-alive", "edgekiln-foreign"):
        (tmp_path / name).mkdir()
    (tmp_path / "edgekiln-dead" / scratch.OWNER).touch()  # its owner is gone: nobody holds the flock
    (tmp_path / "edgekiln-alive" / scratch.OWNER).touch()
    alive = os.open(tmp_path / "edgekiln-alive" / scratch.OWNER, os.O_RDONLY)
    fcntl.flock(alive, fcntl.LOCK_EX)  # as its living owner does
    try:
        with scratch.work_dir() as work:
            assert (work / scratch.OWNER).is_file()
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["edgekiln-alive", "edgekiln-foreign",
                                                                         work.name])
            assert scratch.remove_dead() == []  # this run's own folder is alive too
        assert not work.exists()
    finally:
        os.close(alive)


def test_what_libraries_put_in_temp_goes_with_the_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(scratch.tempfile, "tempdir", None)
    with scratch.work_dir() as work:
        leaked = scratch.tempfile.mkdtemp()  # as onnxruntime's profiler or TensorFlow would, with no name of ours
        assert leaked.startswith(str(work) + os.sep) and os.environ["TMPDIR"] == str(work / "tmp")
    assert not os.path.exists(leaked) and sorted(tmp_path.iterdir()) == []
    assert os.environ["TMPDIR"] == str(tmp_path) and scratch.tempfile.gettempdir() == str(tmp_path)
