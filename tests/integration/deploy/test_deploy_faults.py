"""Faults during a fleet deploy, on real loopback sshd "devices" (issue 38, deliverable 4): the connection drops
mid-upload, the device's disk fills, its package mirror has no interpreter wheel and --wheels is not given, a
host key changes between runs. Each gives its device a row with the reason, the fleet goes on, nothing
half-installed stays on a device, and the same command again deploys only to the devices that failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fault_devices
import pytest

from tests.integration.faults import tmpfs
from tests.system import require

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(device, wheels, remote_base, tmp_path):
    """Five devices reached with the session device's client config; all but `nowheel` share the session's
    venvs (made once), `full` keeps its things on a 300 MB tmpfs, `nowheel`'s mirror lacks ai-edge-litert."""
    require(fault_devices.python_available())
    shared = remote_base / "venvs"
    shared.mkdir(parents=True, exist_ok=True)
    no_litert = fault_devices.mirror_without(wheels, tmp_path / "mirror-without-litert", "ai_edge_litert-")
    with tmpfs(tmp_path / "small-disk", 300 * 2**20) as disk:
        devices = {name: fault_devices.start(tmp_path / name, device, wheels, venvs=shared)
                   for name in ("ok", "drop", "rekey")}
        devices["full"] = fault_devices.start(tmp_path / "full", device, wheels, home=disk, venvs=shared)
        devices["nowheel"] = fault_devices.start(tmp_path / "nowheel", device, no_litert)
        yield devices
        for d in devices.values():
            d.stop()


def _records(bundle: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (bundle / "measurements").glob("*.json")}


def test_faults_get_rows_the_fleet_goes_on_and_a_rerun_redoes_only_them(edgekiln, sample_bundle, device, wheels,
                                                                        fleet, tmp_path):
    bundle = Path(shutil.copytree(sample_bundle, tmp_path / "bundle"))
    order = ["ok", "drop", "full", "nowheel", "rekey"]
    (tmp_path / "devices.txt").write_text("".join(f"{fleet[name].destination}\n" for name in order))
    fleet["drop"].arm("drop", 64 * 1024)  # the connection drops after 64 KB of the upload
    fleet["full"].arm("fill", 32 * 1024)  # the disk fills just before the upload: 32 KB stay free

    def deploy(*extra: object):
        return edgekiln("deploy", bundle, "--inventory", tmp_path / "devices.txt", "--parallel", "5",
                        "-F", device.client_config, "--remote-dir", "edgekiln", "--runs", "5", "--keep", "0", *extra)

    first = deploy()  # no --wheels: each device's pip uses its own mirror
    assert first.returncode == 1
    failed = {name: fleet[name].destination for name in ("drop", "full", "nowheel")}
    assert first.stderr.strip() == (
        f"error: 3 of 5 devices failed: {failed['drop']} (dropped); {failed['full']} (disk_full); "
        f"{failed['nowheel']} (no_wheel) (each failure is described above; the same command again deploys to "
        "these alone)")
    shown = " ".join(first.stdout.split())  # the FAILED lines, unwrapped
    assert sum(line.startswith("FAILED ") for line in first.stdout.splitlines()) == 3
    assert f"FAILED {failed['drop']}: connection dropped (Connection to 127.0.0.1 closed by remote host" in shown
    assert f"FAILED {failed['full']}: disk full: no space left on the device while copying the bundle" in shown
    assert (f"FAILED {failed['nowheel']}: pip install failed: no ai-edge-litert==2.3.0 wheel for this device's "
            "Python 3.11") in shown
    assert "on its package index (ship wheels with --wheels DIR" in shown
    measured = _records(bundle)
    assert sorted(measured) == sorted(fleet[name].device_id for name in ("ok", "rekey"))
    for d in fleet.values():  # no half-unpacked upload, half-made venv or bundle without its manifest
        assert d.leftovers() == [], d.leftovers()
    assert not (fleet["full"].base / "bundles").exists() and not list((fleet["nowheel"].base / "venvs").glob("*/bin"))

    (fleet["full"].home / "ballast").unlink()  # the user frees the disk
    second = deploy("--wheels", wheels)  # and ships the wheels the mirror lacks
    assert second.returncode == 0, second.stderr
    skipped = ", ".join(fleet[name].destination for name in ("ok", "rekey"))
    assert f"2 device(s) skipped: measured earlier with this bundle ({skipped}); --again" in \
        " ".join(second.stdout.split())
    now = _records(bundle)
    assert all(now[fleet[name].device_id] == measured[fleet[name].device_id] for name in ("ok", "rekey"))
    for name in ("drop", "full", "nowheel"):
        record = json.loads(now[fleet[name].device_id])
        assert record["status"] == "ok" and record["validation"]["passed"], name
    assert json.loads(now[fleet["nowheel"].device_id])["venv"]["reused"] is False  # made from the shipped wheels
    for d in fleet.values():
        assert d.leftovers() == [], d.leftovers()

    fleet["rekey"].sshd.new_host_key()  # reinstalled between runs
    (tmp_path / "devices.txt").write_text(f"{fleet['rekey'].destination}\n{fleet['ok'].destination}\n")
    third = deploy("--again")  # measure again, also where a passing record exists
    assert third.returncode == 1
    assert third.stderr.strip().startswith(f"error: 1 of 2 devices failed: {fleet['rekey'].destination} "
                                           "(host_key_mismatch)")
    assert f"FAILED {fleet['rekey'].destination}: host key mismatch" in " ".join(third.stdout.split())
    after = _records(bundle)
    assert after[fleet["rekey"].device_id] == now[fleet["rekey"].device_id]  # a refused device's record stays
    assert after[fleet["ok"].device_id] != now[fleet["ok"].device_id]  # measured again
