"""The output's lock and the leftovers of a killed build (compiler/output_lock.py), on real files and flocks."""

from __future__ import annotations

import pytest

from edgekiln.compiler import output_lock
from edgekiln.compiler.errors import OutputError


def test_a_held_output_is_refused_as_busy_and_free_again_after(tmp_path):
    out = tmp_path / "b"
    busy = pytest.raises(OutputError, match=r"is busy: another edgekiln build \(pid \d+\)")
    with output_lock.hold(out), busy, output_lock.hold(out):  # a second open file: flock refuses it as another's
        pass
    with output_lock.hold(out):
        assert (tmp_path / ".b.lock").is_file()
    assert not (tmp_path / ".b.lock").exists()


def test_a_killed_builds_staging_goes_and_its_old_bundle_comes_back(tmp_path):
    out = tmp_path / "b"
    (tmp_path / ".b.partial-x1" / "runtime").mkdir(parents=True)  # killed while writing
    (tmp_path / ".b.old").mkdir()  # killed between moving the old bundle aside and renaming the new one in
    (tmp_path / ".b.old" / "manifest.json").write_text("{}")
    (tmp_path / ".c.partial-x2").mkdir()  # another output's: not this lock's to touch
    with output_lock.hold(out):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", ".c.partial-x2", "b"]
    assert (out / "manifest.json").read_text() == "{}"


def test_folders_made_for_a_bundle_never_written_are_removed(tmp_path):
    with output_lock.hold(tmp_path / "x" / "y" / "b"):
        assert (tmp_path / "x" / "y").is_dir()
    assert list(tmp_path.iterdir()) == []
