"""Fixtures for deploy tests: a tiny real bundle, the wheels it needs, and a loopback sshd "device".

The wheels are fetched once with `pip download` (into ~/.cache/edgekiln-test-wheels, reused across runs)
and shipped with --wheels, so the device never needs an index. Every ssh connection goes to 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sshd_loopback

from tests.system import require

REPO = Path(__file__).resolve().parents[3]
WHEEL_CACHE = Path.home() / ".cache" / "edgekiln-test-wheels"


def run_cli(*args: object) -> subprocess.CompletedProcess:
    """Run the CLI of this checkout as the user would (exit code, stdout, stderr)."""
    # PYTHONPATH kept after REPO: it may point the editable install at a worktree (its sitecustomize)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "edgekiln.compiler", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def edgekiln() -> Callable[..., subprocess.CompletedProcess]:
    """`edgekiln(*args)` runs the command line in a subprocess."""
    return run_cli


@pytest.fixture(scope="session")
def sample_bundle(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """An int8 bundle of the MNIST CNN for rpi4, built by the real pipeline (never modified by tests).

    Built once per run: the deploy test files run on both pytest-xdist workers, which share the run's temp
    folder; the first builds under a lock, the other reuses it (a bundle is written atomically, so one that
    exists is whole)."""
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    run_folder = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # basetemp is this worker's folder inside the run's
        run_folder = run_folder.parent
    out = run_folder / "deploy-sample-bundle" / "mnist_cnn"
    out.parent.mkdir(exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_dir():
            recipe = Recipe(source=str(REPO / "sample_models/mnist_cnn.keras"), target="rpi4", output=str(out),
                            calib=str(REPO / "sample_models/mnist_calib.npz"), quantize="int8", calib_samples=64,
                            bench_runs=20)
            build(recipe)
    return out


@pytest.fixture(scope="session")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd_loopback.LoopbackDevice]:
    """A trusted loopback device for the whole session."""
    require(None if sshd_loopback.sshd_available() else
            "openssh-server/openssh-client are missing: install Debian's openssh-server (make test does, as root)")
    dev = sshd_loopback.start(tmp_path_factory.mktemp("sshd"))
    dev.trust()
    yield dev
    dev.stop()


@pytest.fixture(scope="session")
def remote_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The device-side directory shared by the session's deploys, so the venv is built once."""
    return tmp_path_factory.mktemp("device-home") / "edgekiln"


@pytest.fixture(scope="session")
def wheels(sample_bundle: Path, device: sshd_loopback.LoopbackDevice) -> Path:
    """The bundle's requirements (+ pip) as wheels for the device's Python, downloaded once and cached."""
    command = "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'"
    probe = subprocess.run(["ssh", "-F", str(device.client_config), "-p", str(device.port),
                            "-o", "BatchMode=yes", f"{device.user}@127.0.0.1", command],
                           capture_output=True, text=True, timeout=60, check=True)
    python = probe.stdout.strip().splitlines()[-1]
    requirements = (sample_bundle / "requirements.txt").read_bytes()
    target = WHEEL_CACHE / f"py{python}-{hashlib.sha256(requirements).hexdigest()[:12]}"
    if not (target / ".complete").is_file():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "--python-version", python, "-d", str(target),
                        "-r", str(sample_bundle / "requirements.txt"), "pip"], check=True, timeout=600)
        (target / ".complete").touch()
    return target
