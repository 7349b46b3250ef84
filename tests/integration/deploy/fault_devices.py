"""Loopback "devices" that misbehave, for the deploy-fault tests and bench/deploy_loopback.py (no pytest here).

Each device is a real sshd whose sessions run a login script (sshd's ForceCommand): the session starts in the
device's own home, with its own PATH (a `python3` of its own) and its own pip configuration (PIP_FIND_LINKS: the
device's package mirror; no index). A fault is armed for the device's next upload (`python3 -c UNPACK ...`, the
one invocation that reads the upload on stdin) and fires once:
    drop       the connection drops after `after` bytes of the upload: the sshd session is killed
    fill       something else fills the device's disk just before the upload, leaving `after` bytes free
    slow       the device answers the upload `after` seconds late
Every device runs as the current user: "several users" would need accounts made on the host.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import sshd_loopback

REAL_PYTHON = Path("/usr/bin/python3")

LOGIN = """#!/bin/sh
# One loopback device's session: its home, its python3, its pip mirror; then the command ssh was given.
cd {home} || exit 1
export HOME={home} PATH={bin}:/usr/bin:/bin PIP_NO_INDEX=1 PIP_FIND_LINKS={mirror} PIP_DISABLE_PIP_VERSION_CHECK=1
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

PYTHON = """#!/bin/sh
# This device's python3: the real one; its next upload (python3 -c UNPACK, stdin = the upload) meets the fault.
if [ "$1" = "-c" ] && [ -e {dir}/armed ]; then
  exec {real} {dir}/fault.py "$@"
fi
exec {real} "$@"
"""

FAULT = '''"""Run the upload with its fault (see tests/integration/deploy/fault_devices.py)."""
import os, shutil, signal, subprocess, sys, time
kind, amount = open({armed!r}).read().split()
os.unlink({armed!r})
args = [{real!r}] + sys.argv[1:]
if kind == "fill":  # leave `amount` bytes free where the device keeps its things
    free = shutil.disk_usage({home!r}).free
    with open(os.path.join({home!r}, "ballast"), "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(free - int(amount), 0))
    os.execv(args[0], args)
if kind == "slow":
    time.sleep(float(amount))
    os.execv(args[0], args)
# drop: pass `amount` bytes on, then kill this session's sshd: the client sees the connection drop and the
# unpacker sees its input end mid-archive
child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
child.stdin.write(sys.stdin.buffer.read(int(amount)))
child.stdin.flush()
pid = os.getppid()
while open("/proc/%d/comm" % pid).read().strip() != "sshd":
    pid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
os.kill(pid, signal.SIGKILL)
child.stdin.close()
child.wait()
'''


@dataclass
class FaultyDevice:
    """A loopback sshd with a home, python3 and pip mirror of its own; `arm` a fault for its next upload."""

    sshd: sshd_loopback.LoopbackDevice
    home: Path

    @property
    def destination(self) -> str:
        return self.sshd.destination

    @property
    def device_id(self) -> str:
        return self.sshd.device_id

    @property
    def base(self) -> Path:
        """Where deploys with --remote-dir edgekiln put their things on this device."""
        return self.home / "edgekiln"

    def arm(self, kind: str, amount: float) -> None:
        (self.sshd.dir / "armed").write_text(f"{kind} {amount}")

    def leftovers(self) -> list[str]:
        """What a deploy must never leave: unpacked uploads, venvs without their completion mark, bundles
        without a manifest."""
        left = [str(p) for p in (self.base / "incoming").glob("*")]
        left += [str(v) for v in (self.base / "venvs").glob("*")
                 if v.is_dir() and not (v / ".edgekiln-complete").is_file()]
        left += [str(b) for b in (self.base / "bundles").glob("*") if not (b / "manifest.json").is_file()]
        return left

    def stop(self) -> None:
        self.sshd.stop()


def start(folder: Path, client: sshd_loopback.LoopbackDevice, mirror: Path, home: Path | None = None,
          venvs: Path | None = None) -> FaultyDevice:
    """A device under folder reached with `client`'s key and client config (its host key trusted there).
    home: its home (default folder/home); venvs: share this venvs folder (one venv for many devices)."""
    folder.mkdir(parents=True)
    home = home or folder / "home"
    home.mkdir(exist_ok=True)
    (folder / "bin").mkdir()
    sshd_dir = folder / "sshd"
    sshd_dir.mkdir()
    python = folder / "bin" / "python3"
    python.write_text(PYTHON.format(dir=sshd_dir, real=REAL_PYTHON))
    (sshd_dir / "fault.py").write_text(FAULT.format(armed=str(sshd_dir / "armed"), real=str(REAL_PYTHON),
                                                    home=str(home)))
    login = folder / "login.sh"
    login.write_text(LOGIN.format(home=home, bin=folder / "bin", mirror=mirror))
    for script in (python, login):
        script.chmod(0o755)
    if venvs is not None:
        (home / "edgekiln").mkdir(exist_ok=True)
        (home / "edgekiln" / "venvs").symlink_to(venvs)
    device = sshd_loopback.start(sshd_dir, client_key=client.dir / "client_ed25519", login=login)
    with client.known_hosts.open("a") as f:
        f.write(device.host_key_line() + "\n")
    return FaultyDevice(device, home)


def mirror_without(wheels: Path, folder: Path, prefix: str) -> Path:
    """A copy of a wheel folder without the wheels whose names start with prefix (a package the device's
    mirror lacks, e.g. no ai-edge-litert for its Python)."""
    folder.mkdir()
    for wheel in wheels.glob("*.whl"):
        if not wheel.name.startswith(prefix):
            shutil.copy(wheel, folder)
    return folder


def python_available() -> str | None:
    """Why these devices cannot run here, or None."""
    return None if REAL_PYTHON.is_file() and os.access(REAL_PYTHON, os.X_OK) else \
        f"the fault devices run {REAL_PYTHON} (Debian's python3), missing here ({sys.platform})"
