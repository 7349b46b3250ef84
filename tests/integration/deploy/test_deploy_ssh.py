"""`edgekiln deploy` to a real OpenSSH server on 127.0.0.1: the full path and each one-line failure."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sshd_loopback

from tests.system import require

pytestmark = pytest.mark.integration


def _copy(bundle: Path, tmp_path: Path) -> Path:
    """A private copy: deploys write measurements/ into the bundle."""
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


@pytest.fixture
def deploy(edgekiln):
    """deploy(bundle, device, remote_base, *flags, config=None): `edgekiln deploy` to one loopback device."""

    def run(bundle: Path, device: sshd_loopback.LoopbackDevice, base: Path, *extra: object,
            config: Path | None = None):
        return edgekiln("deploy", bundle, "--host", device.destination, "-F", config or device.client_config,
                        "--remote-dir", base, "--runs", "10", *extra)

    return run


def _record(bundle: Path, device: sshd_loopback.LoopbackDevice) -> dict:
    return json.loads((bundle / "measurements" / f"{device.device_id}.json").read_text())


def _ops_of(bundle: Path) -> list[str]:
    """The builtin op of every node of the bundle's model, in execution order."""
    from edgekiln.runtime.backends import TFLiteBackend

    return [n for n in TFLiteBackend((bundle / "model.tflite").read_bytes(), 1).op_names() if n != "DELEGATE"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_deploy_then_reused_venv(deploy, edgekiln, sample_bundle, device, wheels, tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    remote_base = tmp_path / "fresh-device" / "edgekiln"  # nothing there yet: the venv is made here
    manifest_before, model_before = _sha(bundle / "manifest.json"), _sha(bundle / "model.tflite")

    first = deploy(bundle, device, remote_base, "--wheels", wheels)
    assert first.returncode == 0, first.stderr
    record = _record(bundle, device)
    assert record["status"] == "ok" and record["measured_on"] == "device"
    assert record["venv"]["reused"] is False  # made from the shipped wheels
    assert record["validation"]["passed"] and len(record["validation"]["samples"]) == 8
    assert record["latency"]["runs"] == 10 and record["latency"]["p50_ms"] > 0
    assert record["latency"]["runtime"] == "ai-edge-litert"
    # every pin of requirements.txt (the locked set) is reported with the version installed
    assert {"numpy": "2.4.6", "ai-edge-litert": "2.3.0"}.items() <= record["packages"].items()
    assert record["device"]["machine"] == "x86_64" and record["device"]["cores"] >= 1
    assert any("targets aarch64" in w for w in record["warnings"])  # an x86 "device" for an rpi4 bundle
    remote = Path(record["bundle"]["remote_dir"])
    assert remote.parent == remote_base / "bundles" and _sha(remote / "model.tflite") == model_before
    assert not list((remote_base / "incoming").iterdir())  # the upload (and its wheels) was cleaned up
    # The bundle's own files are untouched: measurements live beside them.
    assert _sha(bundle / "manifest.json") == manifest_before and _sha(bundle / "model.tflite") == model_before
    # report.html, a view of those files, was remade with the device's figure; it never travels to the device.
    assert f'data-field="device.p50_ms">{record["latency"]["p50_ms"]}<' in (bundle / "report.html").read_text()
    assert not (remote / "report.html").exists()

    second = deploy(bundle, device, remote_base, "--profile")  # no --wheels needed: the venv is reused
    assert second.returncode == 0, second.stderr
    again = _record(bundle, device)
    assert again["venv"]["reused"] is True and again["validation"]["passed"]
    assert record["profile"] is None  # per-op profiling only when asked: it takes longer than bench
    ops = again["profile"]["ops"]  # --profile: per op, measured on the device by the bundle's runtime
    assert again["profile"]["method"] == "prefix-differences" and len(ops) == len(_ops_of(bundle))
    assert [op["op"] for op in sorted(ops, key=lambda op: op["index"])] == _ops_of(bundle)
    assert abs(sum(op["ms"] for op in ops) - again["profile"]["sum_ms"]) < 0.01
    assert again["profile"]["measured_on"] == "device" and sum(op["macs"] for op in ops) > 0  # the host's columns
    assert "reused" in second.stdout and "PASS" in second.stdout

    shown = edgekiln("inspect", bundle)
    assert shown.returncode == 0, shown.stderr
    device_line = next(line for line in shown.stdout.splitlines() if line.startswith("device "))
    assert f"{device.device_id} p50 {again['latency']['p50_ms']} ms" in device_line
    assert "[device-measured]" in device_line and "[host-measured]" in shown.stdout


def test_tampered_golden_fails_validation_on_the_device(deploy, sample_bundle, device, wheels, remote_base,
                                                        tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    golden = dict(np.load(bundle / "golden.npz"))
    golden["output_0"][3] += 0.5
    np.savez(bundle / "golden.npz", **golden)

    done = deploy(bundle, device, remote_base, "--wheels", wheels)
    assert done.returncode == 1
    error = done.stderr.strip()
    assert error.count("\n") == 0
    assert "validation mismatch: 1 of 8 golden samples differ, worst sample 3" in error
    assert "max |diff| 0.5" in error
    record = _record(bundle, device)
    assert record["status"] == "validation_failed" and record["latency"] is None
    assert [s["index"] for s in record["validation"]["samples"] if not s["passed"]] == [3]


def test_tampered_model_is_refused_by_its_checksum(deploy, sample_bundle, device, wheels, remote_base,
                                                   tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    model = bytearray((bundle / "model.tflite").read_bytes())
    model[-100] ^= 1
    (bundle / "model.tflite").write_bytes(bytes(model))

    done = deploy(bundle, device, remote_base, "--wheels", wheels)
    assert done.returncode == 1
    assert "validation failed: model.tflite has sha256" in done.stderr
    assert "refusing to load it" in done.stderr
    assert _record(bundle, device)["status"] == "validation_failed"


def _client_copy(device: sshd_loopback.LoopbackDevice, tmp_path: Path, known_hosts: str,
                 key: Path | None = None) -> Path:
    """A client config like the device's but with its own known_hosts (and optionally another key)."""
    (tmp_path / "known_hosts").write_text(known_hosts)
    text = device.client_config.read_text().replace(str(device.known_hosts), str(tmp_path / "known_hosts"))
    if key is not None:
        text = text.replace(str(device.dir / "client_ed25519"), str(key))
    (tmp_path / "ssh_config").write_text(text)
    return tmp_path / "ssh_config"


def test_host_key_mismatch_is_refused_even_with_accept_new(deploy, sample_bundle, device, remote_base,
                                                           tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    impostor = sshd_loopback.keygen(tmp_path / "impostor", "impostor").split()[:2]
    config = _client_copy(device, tmp_path, f"[127.0.0.1]:{device.port} {' '.join(impostor)}\n")
    for extra in ((), ("--accept-new-host-keys",)):
        done = deploy(bundle, device, remote_base, *extra, config=config)
        assert done.returncode == 1
        assert done.stderr.startswith(f"error: {device.destination}: host key mismatch"), done.stderr
        assert done.stderr.count("\n") == 1
    assert not (bundle / "measurements").exists()
    assert (tmp_path / "known_hosts").read_text().split()[2] == impostor[1]  # never rewritten


def test_unknown_host_key_needs_the_explicit_flag(deploy, sample_bundle, device, remote_base, tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    config = _client_copy(device, tmp_path, "")
    refused = deploy(bundle, device, remote_base, config=config)
    assert refused.returncode == 1 and "unknown host key" in refused.stderr
    assert "--accept-new-host-keys" in refused.stderr and (tmp_path / "known_hosts").read_text() == ""

    accepted = deploy(bundle, device, remote_base, "--accept-new-host-keys", config=config)
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / "known_hosts").read_text().split()[1:3] == device.host_key_line().split()[1:3]


def test_refused_key_and_missing_python_are_one_line_failures(deploy, sample_bundle, device, remote_base,
                                                              tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    stranger = tmp_path / "stranger"
    sshd_loopback.keygen(stranger, "not authorized")
    config = _client_copy(device, tmp_path, device.host_key_line() + "\n", key=stranger)
    refused = deploy(bundle, device, remote_base, config=config)
    assert refused.returncode == 1 and "authentication refused" in refused.stderr
    assert "Permission denied (publickey)" in refused.stderr

    no_python = deploy(bundle, device, remote_base, "--python", "python3-not-installed")
    assert no_python.returncode == 1
    assert f"{device.destination}: no Python 3 on the device" in no_python.stderr


def test_pip_failure_reports_pips_last_error_line(deploy, sample_bundle, device, wheels, tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    partial = tmp_path / "partial-wheels"
    partial.mkdir()
    for wheel in wheels.glob("*.whl"):
        if not wheel.name.startswith(("numpy-", "ai_edge_litert-")):
            shutil.copy(wheel, partial)
    base = tmp_path / "fresh-device"
    done = deploy(bundle, device, base, "--wheels", partial)
    assert done.returncode == 1
    assert re.search(r"pip install failed: no (ai-edge-litert==2\.3\.0|numpy==2\.4\.6) wheel for this device's "
                     r"Python 3\.", done.stderr), done.stderr
    assert "in --wheels (the wheels in --wheels DIR must cover requirements.txt)" in done.stderr
    assert not [p for p in (base / "venvs").iterdir() if p.is_dir()]  # no half-made venv is left to reuse
    assert not (bundle / "measurements").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a device whose disk cannot hold the bundle and its venv (needs root to mount)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        require(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_refused_before_copying(deploy, sample_bundle, device, wheels, small_disk, tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    done = deploy(bundle, device, small_disk / "edgekiln", "--wheels", wheels)
    assert done.returncode == 1
    assert f"{device.destination}: disk full: 4 MB free under {small_disk}/edgekiln, about" in done.stderr
    assert list(small_disk.iterdir()) == []  # nothing was copied


def test_a_device_that_does_not_answer_in_time_is_cut_off(device):
    from edgekiln.compiler.deploy.transport import DeviceFailure, SshOptions, parse_destination
    from edgekiln.compiler.deploy.transport import run as ssh_run

    with pytest.raises(DeviceFailure) as caught:
        ssh_run(parse_destination(device.destination), SshOptions(config=device.client_config), "sleep 30",
                timeout=2)
    assert caught.value.kind == "timeout" and caught.value.message == "no answer within 2 s"


NO_ENSUREPIP = """#!/bin/sh
# {python} as on Debian without python3-venv: its ensurepip hidden in a private mount namespace.
exec unshare -m sh -c 'mount --bind {empty} {ensurepip} && exec {python} "$@"' sh "$@"
"""


@pytest.fixture
def python_without_venv(tmp_path) -> Path:
    """A real device Python whose `-m venv` fails as on Debian without python3-venv (root + unshare)."""
    python, ensurepip = Path("/usr/bin/python3"), Path("/usr/lib/python3.11/ensurepip")
    if not (python.is_file() and ensurepip.is_dir() and shutil.which("unshare")):
        require("needs Debian's /usr/bin/python3 3.11 and unshare")
    (tmp_path / "empty").mkdir()
    wrapper = tmp_path / "python3-without-venv"
    wrapper.write_text(NO_ENSUREPIP.format(python=python, empty=tmp_path / "empty", ensurepip=ensurepip))
    wrapper.chmod(0o755)
    hidden = "import sys, ensurepip; sys.exit(hasattr(ensurepip, 'bootstrap'))"  # the empty dir: a namespace
    if subprocess.run([wrapper, "-c", hidden], capture_output=True).returncode != 0:
        require("cannot hide ensurepip here (unshare -m needs root)")
    return wrapper


def test_no_python3_venv_needs_pip_wheel_then_works(deploy, sample_bundle, device, wheels,
                                                    python_without_venv, tmp_path):
    bundle = _copy(sample_bundle, tmp_path)
    without_pip = tmp_path / "wheels-without-pip"
    shutil.copytree(wheels, without_pip, ignore=shutil.ignore_patterns("pip-*"))
    refused = deploy(bundle, device, tmp_path / "a", "--wheels", without_pip, "--python", python_without_venv)
    assert refused.returncode == 1
    assert "python3 -m venv failed: ensurepip is not available (install python3-venv" in refused.stderr

    done = deploy(bundle, device, tmp_path / "b", "--wheels", wheels, "--python", python_without_venv)
    assert done.returncode == 0, done.stderr  # pip came from its shipped wheel
    record = _record(bundle, device)
    assert record["status"] == "ok" and record["device"]["python"].startswith("3.11")
