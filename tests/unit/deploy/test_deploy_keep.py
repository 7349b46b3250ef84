"""`deploy --keep N` on the device: which bundle versions and venvs go, which stay, on real directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekiln.compiler.deploy import agent_keep
from edgekiln.compiler.deploy.fleet import removal_lines

HASHES = ["a" * 12, "b" * 12, "c" * 12, "d" * 12, "e" * 12]


def _version(base: Path, version: str, sequence: int, venvs: tuple[str, ...] = ("1" * 16,)) -> Path:
    """A bundle directory as the agent leaves it: files, its deploy record, its last result."""
    directory = base / "bundles" / version
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text("{}")
    (directory / "model.tflite").write_bytes(b"\0" * 20000)
    record = {"version": version, "sequence": sequence, "venvs": list(venvs), "deployed_utc": "2025-01-01T00:00:00Z"}
    (directory / agent_keep.DEPLOY_RECORD).write_text(json.dumps(record))
    (base / "results").mkdir(exist_ok=True)
    (base / "results" / f"{version}.json").write_text("{}")
    return directory


def _venv(base: Path, key: str) -> Path:
    path = base / "venvs" / key
    (path / "bin").mkdir(parents=True)
    (path / ".edgekiln-complete").write_text("{}")
    (path / "bin" / "python").write_bytes(b"\0" * 10000)
    return path


def _versions(base: Path, count: int, name: str = "mnist") -> list[str]:
    names = [f"{name}-{h}" for h in HASHES[:count]]
    for sequence, version in enumerate(names, 1):
        _version(base, version, sequence)
    return names


def _selected(base: Path, current: str, keep: int) -> list[str]:
    records = agent_keep.versions_of(str(base / "bundles"), "mnist")
    return [r["version"] for r in agent_keep.select_removals(records, current, keep)]


@pytest.mark.parametrize(("keep", "removed"), [(0, []), (1, [0, 1, 2, 3]), (2, [0, 1, 2]), (4, [0]), (5, []),
                                               (9, [])])
def test_the_oldest_go_and_the_just_deployed_counts_as_one_of_those_kept(tmp_path, keep, removed):
    names = _versions(tmp_path, 5)
    assert _selected(tmp_path, names[-1], keep) == [names[k] for k in reversed(removed)]


def test_the_just_deployed_version_stays_even_when_its_record_is_the_oldest(tmp_path):
    names = _versions(tmp_path, 4)
    assert _selected(tmp_path, names[0], 1) == [names[3], names[2], names[1]]
    assert _selected(tmp_path, names[0], 2) == [names[2], names[1]]  # kept: the current one and the newest


def test_only_directories_the_agent_recorded_under_this_exact_name_are_candidates(tmp_path):
    names = _versions(tmp_path, 2)
    bundles = tmp_path / "bundles"
    (bundles / f"mnist-{HASHES[2]}").mkdir()  # a user's directory: no deploy record
    (bundles / f"mnist-{HASHES[2]}" / "manifest.json").write_text("{}")
    copied = _version(tmp_path, f"mnist-{HASHES[3]}", 0)  # a record naming another directory (copied)
    record = json.loads((copied / agent_keep.DEPLOY_RECORD).read_text())
    (copied / agent_keep.DEPLOY_RECORD).write_text(json.dumps({**record, "version": f"mnist-{HASHES[4]}"}))
    (bundles / f"mnist-{HASHES[4]}").symlink_to(bundles / names[0])  # a link to one of ours
    (bundles / "mnist-notahash0000").mkdir()
    (bundles / f"mnist-{'0' * 11}").write_text("a file")
    _version(tmp_path, f"mnist-large-{HASHES[0]}", 0)  # another bundle whose name starts like this one
    _version(tmp_path, f"mnist_v2-{HASHES[0]}", 0)
    (bundles / f"mnist-{'f' * 12}").mkdir()  # a record that is not JSON
    (bundles / f"mnist-{'f' * 12}" / agent_keep.DEPLOY_RECORD).write_text("{not json")

    found = agent_keep.versions_of(str(bundles), "mnist")
    assert [r["version"] for r in found] == names


def test_prune_removes_old_versions_with_their_results_and_counts_the_bytes(tmp_path):
    names = _versions(tmp_path, 4)
    foreign = tmp_path / "bundles" / "my-notes"
    foreign.mkdir()
    sizes = {v: agent_keep.tree_bytes(str(tmp_path / "bundles" / v)) for v in names}
    result_bytes = (tmp_path / "results" / f"{names[0]}.json").stat().st_blocks * 512

    report = agent_keep.prune(str(tmp_path), names[3], keep=2)

    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == [names[2], names[3], "my-notes"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"{names[2]}.json", f"{names[3]}.json"]
    assert report["name"] == "mnist" and [r["version"] for r in report["removed"]] == [names[1], names[0]]
    assert report["bytes_freed"] == sizes[names[0]] + sizes[names[1]] + 2 * result_bytes > 40000
    assert report["errors"] == [] and report["skipped"] == []
    assert removal_lines(report) == [f"removed 2 old version(s) of mnist, {report['bytes_freed'] / 2**20:.1f} MB freed"]


def test_keep_zero_removes_nothing(tmp_path):
    names = _versions(tmp_path, 3)
    _venv(tmp_path, "2" * 16)  # unused, but --keep 0 means never delete
    report = agent_keep.prune(str(tmp_path), names[2], keep=0)
    assert report["removed"] == report["venvs_removed"] == [] and report["bytes_freed"] == 0
    assert len(list((tmp_path / "bundles").iterdir())) == 3 and (tmp_path / "venvs" / ("2" * 16)).is_dir()
    assert removal_lines(report) == []


def test_a_version_whose_deploy_is_in_progress_is_skipped(tmp_path):
    names = _versions(tmp_path, 3)
    held = agent_keep.acquire(agent_keep.bundle_lock(str(tmp_path), names[0]), exclusive=False)
    try:
        report = agent_keep.prune(str(tmp_path), names[2], keep=1)
    finally:
        held.close()
    assert report["skipped"] == [names[0]] and [r["version"] for r in report["removed"]] == [names[1]]
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == [names[0], names[2]]


def test_venvs_no_remaining_bundle_uses_go_the_others_stay(tmp_path):
    used, orphaned, old = "1" * 16, "2" * 16, "3" * 16
    _version(tmp_path, f"mnist-{HASHES[0]}", 1, venvs=(old,))
    _version(tmp_path, f"mnist-{HASHES[1]}", 2, venvs=(used,))
    _version(tmp_path, f"other-{HASHES[0]}", 3, venvs=(used,))
    for key in (used, orphaned, old):
        _venv(tmp_path, key)
    (tmp_path / "venvs" / ("4" * 16)).mkdir()  # not complete: not ours to judge
    (tmp_path / "venvs" / "not-a-venv").mkdir()

    report = agent_keep.prune(str(tmp_path), f"mnist-{HASHES[1]}", keep=1)

    assert sorted(v["venv"] for v in report["venvs_removed"]) == [orphaned, old]
    assert sorted(p.name for p in (tmp_path / "venvs").iterdir()) == [used, "4" * 16, "not-a-venv"]
    assert "and 2 venv(s) no remaining bundle uses" in removal_lines(report)[0]


def test_a_bundle_without_a_deploy_record_keeps_every_venv(tmp_path):
    names = _versions(tmp_path, 2)
    legacy = tmp_path / "bundles" / f"legacy-{HASHES[0]}"  # deployed by an agent that kept no record
    legacy.mkdir()
    (legacy / "manifest.json").write_text("{}")
    _venv(tmp_path, "9" * 16)
    report = agent_keep.prune(str(tmp_path), names[1], keep=1)
    assert [r["version"] for r in report["removed"]] == [names[0]] and report["venvs_removed"] == []
    assert "has no deploy record" in report["venvs_note"] and (tmp_path / "venvs" / ("9" * 16)).is_dir()
    assert legacy.is_dir()


def test_a_removal_cut_short_is_finished_by_the_next_prune(tmp_path):
    names = _versions(tmp_path, 1)
    trash = tmp_path / "bundles" / f"{agent_keep.REMOVING}mnist-{HASHES[3]}"
    (trash / "sub").mkdir(parents=True)
    (trash / "sub" / "model.tflite").write_bytes(b"\0" * 8192)
    report = agent_keep.prune(str(tmp_path), names[0], keep=3)
    assert not trash.exists() and report["leftovers"][0]["bytes"] >= 8192
    assert report["bytes_freed"] == report["leftovers"][0]["bytes"]


def test_the_deploy_sequence_orders_deploys_whatever_the_clock_says(tmp_path):
    assert [agent_keep.next_sequence(str(tmp_path)) for _ in range(3)] == [1, 2, 3]
