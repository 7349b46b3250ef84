"""A real OpenSSH server on 127.0.0.1 for deploy tests and the deploy benchmark: a loopback "device".

Everything lives in one temporary directory: the server's host key and config, an authorized client
key, and a client-side ssh config (`-F`) with its own known_hosts, so the user's ~/.ssh is never read
or written. The server runs as the current user (root in CI) with `UsePAM no` and `StrictModes no`.
No pytest import here: bench/deploy_loopback.py uses it too.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")

SERVER_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
{extra}"""

# No LogLevel here: the deploy code must classify ssh's messages at their default level.
CLIENT_CONFIG = """\
Host *
  IdentityFile {dir}/client_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {dir}/known_hosts
  GlobalKnownHostsFile /dev/null
"""


def sshd_available() -> bool:
    return SSHD.is_file() and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 key pair at path / path.pub; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class LoopbackDevice:
    """A running sshd on 127.0.0.1:port and the client files that reach it."""

    dir: Path
    port: int
    user: str
    process: subprocess.Popen | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def device_id(self) -> str:
        """The name of its record: measurements/<device_id>.json."""
        return f"{self.user}@127.0.0.1_{self.port}"

    @property
    def client_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def host_key_line(self) -> str:
        """This server's key as a known_hosts line."""
        key = (self.dir / "host_ed25519.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {' '.join(key)}"

    def trust(self) -> None:
        """Record the server's real host key in the client's known_hosts."""
        with self.known_hosts.open("a") as f:
            f.write(self.host_key_line() + "\n")

    def new_host_key(self) -> None:
        """The device was reinstalled: a new host key, sshd restarted on the same port (the client's
        known_hosts still holds the old key)."""
        self.stop()
        for old in self.dir.glob("host_ed25519*"):
            old.unlink()
        keygen(self.dir / "host_ed25519", "edgekiln-test-host-reinstalled")
        self.process = _serve(self.dir)
        _wait_listening(self)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def start(directory: Path, user: str | None = None, client_key: Path | None = None,
          login: Path | None = None) -> LoopbackDevice:
    """Generate keys and configs under directory and start sshd on a free loopback port.

    client_key: reuse an existing client key (so several devices share one identity and one
    client config); by default a new one is made. login: a script every session runs instead of the
    command (sshd's ForceCommand; the command is in $SSH_ORIGINAL_COMMAND): a device of its own, with
    its own home, PATH or pip configuration, on the one user account.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    keygen(directory / "host_ed25519", "edgekiln-test-host")
    if client_key is None:
        client_key = directory / "client_ed25519"
        keygen(client_key, "edgekiln-test-client")
    elif client_key != directory / "client_ed25519":
        shutil.copy(client_key, directory / "client_ed25519")
        shutil.copy(client_key.with_suffix(".pub"), directory / "client_ed25519.pub")
    (directory / "client_ed25519").chmod(0o600)
    (directory / "authorized_keys").write_text((directory / "client_ed25519.pub").read_text())
    extra = f"ForceCommand {login}\n" if login else ""
    (directory / "sshd_config").write_text(SERVER_CONFIG.format(port=port, dir=directory, extra=extra))
    (directory / "ssh_config").write_text(CLIENT_CONFIG.format(dir=directory))
    (directory / "known_hosts").touch()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    device = LoopbackDevice(directory, port, user or pwd.getpwuid(os.getuid()).pw_name)
    device.process = _serve(directory)
    _wait_listening(device)
    return device


def _serve(directory: Path) -> subprocess.Popen:
    log = (directory / "sshd.log").open("a")
    return subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(directory / "sshd_config")],
                            stdout=log, stderr=log, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by SIGKILL (Linux prctl), so no
    sshd outlives an interrupted suite."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_listening(device: LoopbackDevice, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if device.process is not None and device.process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(device.dir / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", device.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    device.stop()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{device.port} within {timeout} s")
