"""`edgekiln deploy --keep N` through a real sshd: old versions of a bundle leave the device, the rest stay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.manifest import dumps

pytestmark = pytest.mark.integration
NAME = "keep_me"


def _build_of(sample_bundle: Path, tmp_path: Path, day: int) -> Path:
    """The same model built on another day: a new manifest `created_utc`, hence a new NAME-HASH version."""
    bundle = Path(shutil.copytree(sample_bundle, tmp_path / f"day{day}" / NAME))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["created_utc"] = f"2030-01-{day:02d}T00:00:00Z"
    (bundle / "manifest.json").write_text(dumps(manifest))
    return bundle


def _on_device(remote_base: Path) -> list[str]:
    return sorted(p.name for p in (remote_base / "bundles").iterdir() if p.name.startswith(NAME + "-"))


def _removed(bundle: Path, device) -> dict:
    return json.loads((bundle / "measurements" / f"{device.device_id}.json").read_text())["removed_on_device"]


def test_keep_two_leaves_the_two_newest_versions(edgekiln, sample_bundle, device, wheels, remote_base,
                                                 tmp_path):
    builds = [_build_of(sample_bundle, tmp_path, day) for day in (1, 2, 3)]
    versions, outputs = [], []
    for bundle in builds:
        done = edgekiln("deploy", bundle, "--host", device.destination, "-F", device.client_config,
                        "--remote-dir", remote_base, "--wheels", wheels, "--runs", "5", "--keep", "2")
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
        versions.append(Path(json.loads((bundle / "measurements" / f"{device.device_id}.json").read_text())
                             ["bundle"]["remote_dir"]).name)
    assert len(set(versions)) == 3 and all(v.startswith(NAME + "-") for v in versions)
    assert _on_device(remote_base) == sorted(versions[1:])
    assert not (remote_base / "results" / f"{versions[0]}.json").exists()

    removed = _removed(builds[2], device)
    assert [r["version"] for r in removed["removed"]] == [versions[0]] and removed["errors"] == []
    assert removed["bytes_freed"] >= sum(f.stat().st_size for f in builds[0].rglob("*") if f.is_file())
    mb = removed["bytes_freed"] / 2**20
    assert f"{device.destination}: removed 1 old version(s) of {NAME}, {mb:.1f} MB freed" in outputs[2]
    assert "old version(s)" not in outputs[0] + outputs[1]  # nothing beyond 2 yet (a venv left by another test may go)

    # A failed validation removes nothing, even with --keep 1.
    tampered = _build_of(sample_bundle, tmp_path, 4)
    golden = dict(np.load(tampered / "golden.npz"))
    golden["output_0"][0] += 0.5
    np.savez(tampered / "golden.npz", **golden)
    failed = edgekiln("deploy", tampered, "--host", device.destination, "-F", device.client_config,
                      "--remote-dir", remote_base, "--runs", "5", "--keep", "1")
    assert failed.returncode == 1 and "validation mismatch" in failed.stderr
    assert len(_on_device(remote_base)) == 3 and set(versions[1:]) <= set(_on_device(remote_base))

    # Deploying an older version again makes it the newest: with --keep 1 only it stays.
    again = edgekiln("deploy", builds[1], "--host", device.destination, "-F", device.client_config,
                     "--remote-dir", remote_base, "--runs", "5", "--keep", "1", "--again")  # measured before
    assert again.returncode == 0, again.stderr
    assert _on_device(remote_base) == [versions[1]]
    assert f"removed 2 old version(s) of {NAME}" in again.stdout
    assert len(_removed(builds[1], device)["removed"]) == 2
