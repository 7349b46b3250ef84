"""A fleet of loopback "devices" (one down), and `build --device` writing latency.device into the manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import sshd_loopback

from edgekiln import runtime
from edgekiln.compiler.evaluate.criterion import Criterion
from tests.choice_rule import assert_choice_obeys_rule, competing_rows, recorded_criterion

pytestmark = pytest.mark.integration


@pytest.fixture
def second_device(device, tmp_path_factory):
    """Another sshd reachable with the session device's client config (same key, its host key trusted)."""
    other = sshd_loopback.start(tmp_path_factory.mktemp("sshd2"), client_key=device.dir / "client_ed25519")
    with device.known_hosts.open("a") as f:
        f.write(other.host_key_line() + "\n")
    yield other
    other.stop()


def test_fleet_with_one_device_down(edgekiln, sample_bundle, device, second_device, wheels, remote_base,
                                    tmp_path):
    bundle = Path(shutil.copytree(sample_bundle, tmp_path / "bundle"))
    down = f"{device.user}@127.0.0.1:{sshd_loopback.free_port()}"  # nothing listens there
    inventory = tmp_path / "devices.txt"
    inventory.write_text(f"# three boards\n{device.destination}\n\n{down}   # unplugged\n"
                         f"{second_device.destination}\n")

    done = edgekiln("deploy", bundle, "--inventory", inventory, "--parallel", "3", "-F", device.client_config,
                    "--remote-dir", remote_base, "--wheels", wheels, "--runs", "10")

    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: 1 of 3 devices failed: {down} (unreachable) "
                                   "(each failure is described above; the same command again deploys to these alone)")
    assert f"FAILED {down}: unreachable: Connection refused" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"│ {device.user}@127.0.0.1:")]
    assert len(rows) == 3 and sum("PASS" in row for row in rows) == 2
    written = sorted(p.name for p in (bundle / "measurements").iterdir())
    assert written == sorted(f"{d.device_id}.json" for d in (device, second_device))
    for name in written:
        record = json.loads((bundle / "measurements" / name).read_text())
        assert record["status"] == "ok" and record["latency"]["p50_ms"] > 0


def test_build_with_device_puts_device_latency_in_the_manifest(edgekiln, device, wheels, remote_base,
                                                               tmp_path):
    out = tmp_path / "built"
    # --format tflite: the wheels shipped are LiteRT's; which format a free choice ships is this host's timing.
    done = edgekiln("build", "sample_models/mnist_cnn.keras", "--target", "rpi4", "--format", "tflite",
                    "--calib", "sample_models/mnist_calib.npz", "--calib-samples", "64", "--runs", "20",
                    "-o", out, "--device", device.destination, "-F", device.client_config, "--wheels", wheels,
                    "--remote-dir", remote_base)
    assert done.returncode == 0, done.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["latency"]["device"]
    record = json.loads((out / "measurements" / f"{entry['device']}.json").read_text())
    assert entry["device"] == device.device_id and entry["measured_on"] == "device"
    assert entry["validated"] is True and entry["p50_ms"] == record["latency"]["p50_ms"] > 0
    assert entry["runtime"] == "ai-edge-litert" and entry["machine"] == "x86_64"
    # The model and its checksum are what the build wrote; the manifest was replaced whole (no temp files).
    assert manifest["model"]["sha256"] == hashlib.sha256((out / "model.tflite").read_bytes()).hexdigest()
    assert record["bundle"]["model_sha256"] == manifest["model"]["sha256"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert runtime.load(out).validate().passed

    # The candidates were timed on the device before the choice, and its table decided.
    q = manifest["quantization"]
    assert q["evidence"]["kind"] == "device" and q["evidence"]["device"] == device.destination
    assert q["timing"]["device"]["device_id"] == device.device_id and q["timing"]["device"]["rounds"] >= 1
    criterion: Criterion = recorded_criterion(q)
    eligible = [r for r in competing_rows(q) if criterion.meets(r.judged)]
    on_device = [r.timings.device_p50_ms for r in eligible]
    assert len(eligible) > 1 and all(ms is not None and ms > 0 for ms in on_device)
    assert_choice_obeys_rule(manifest)
    assert f"chosen by the timing on {device.destination}" in done.stdout.replace("\n", " ")
    assert f"device p50 on {device.destination}" in done.stdout


def test_a_device_that_cannot_be_reached_stops_the_race_in_one_line(device, tmp_path):
    from edgekiln.compiler.deploy.race import race_on_device
    from edgekiln.compiler.deploy.remote import DeployOptions
    from edgekiln.compiler.deploy.transport import SshOptions
    from edgekiln.compiler.errors import DeployError

    down = f"{device.user}@127.0.0.1:{sshd_loopback.free_port()}"  # nothing listens there
    options = DeployOptions(ssh=SshOptions(config=device.client_config), remote_dir=str(tmp_path / "never"))
    with pytest.raises(DeployError) as raised:
        race_on_device(down, options, {"float32": ("tflite", b"model"), "int8": ("tflite", b"model")}, [], 1)
    assert raised.value.one_line().startswith(f"{down}: unreachable: Connection refused")
    assert "\n" not in raised.value.one_line() and not (tmp_path / "never").exists()
