"""SSH transport through the system `ssh` client, and ssh's failures as one-line device errors.

Why the system client (not paramiko/asyncssh): it already honours everything the user set up —
~/.ssh/config (Host aliases, User, Port, ProxyJump, ControlMaster), keys, the agent, known_hosts —
with no extra dependency, and it is what the user debugs with. Files travel as a tar stream on the
same connection that runs the device agent, so neither scp nor sftp is needed on the device.

Host keys: StrictHostKeyChecking is forced to `yes` (an unknown or changed key is refused) unless
the user passes --accept-new-host-keys (`accept-new`: unknown keys are recorded, changed keys are
still refused). BatchMode=yes: no password or passphrase prompt can hang a fleet run.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edgekiln.compiler.errors import DeployError

_DESTINATION = re.compile(r"^(?:(?P<user>[^-@\s/:][^@\s/:]*)@)?"  # nothing may start with "-" (an ssh option)
                          r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.%-]*)"
                          r"(?::(?P<port>\d+))?$")


class DeviceFailure(DeployError):
    """One device failed; `kind` names the failure for the summary table."""

    def __init__(self, kind: str, message: str, hint: str = "", detail: dict | None = None) -> None:
        super().__init__(message, hint)
        self.kind = kind
        self.detail = detail or {}


@dataclass(frozen=True)
class Destination:
    """`user@host[:port]` as the user wrote it; user and port may come from ~/.ssh/config instead."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        return f"{self.user + '@' if self.user else ''}{host}{f':{self.port}' if self.port else ''}"

    @property
    def device_id(self) -> str:
        """A file-name-safe id: measurements/<device_id>.json."""
        return re.sub(r"[^A-Za-z0-9._@-]+", "_", str(self)).strip("_")


def parse_destination(text: str) -> Destination:
    """Parse `user@host`, `host:2222`, `pi@[fe80::1]:22` or an ssh config alias."""
    match = _DESTINATION.match(text.strip())
    port = int(match["port"]) if match and match["port"] else None
    if not match or (port is not None and not 0 < port < 65536):
        raise DeployError(f"'{text.strip()}' is not a device address", "write user@host or user@host:port")
    return Destination(match["host"].strip("[]"), match["user"], port)


@dataclass(frozen=True)
class SshOptions:
    """How to reach devices; everything else comes from the user's ssh configuration."""

    identity: Path | None = None
    config: Path | None = None
    accept_new_host_keys: bool = False
    connect_timeout: int = 10

    def argv(self, dest: Destination, command: str) -> list[str]:
        """The ssh command line that runs `command` (a remote shell string) on `dest`."""
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new_host_keys else 'yes'}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.config:
            args += ["-F", str(self.config)]
        if self.identity:
            args += ["-i", str(self.identity)]
        if dest.port:
            args += ["-p", str(dest.port)]
        target = f"{dest.user}@{dest.host}" if dest.user else dest.host
        return [*args, "--", target, command]


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run(dest: Destination, options: SshOptions, command: str, stdin: IO[bytes] | bytes | None = None,
        timeout: float = 600, on_line: Callable[[str], None] = lambda line: None) -> Completed:
    """Run `command` on the device; stdout lines go to on_line as they arrive.

    ssh's own failures (exit 255) raise DeviceFailure; the remote command's exit code is returned.
    """
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as feed:
        if isinstance(stdin, bytes):
            feed.write(stdin)
            feed.seek(0)
            stdin = feed
        try:
            proc = subprocess.Popen(options.argv(dest, command), stdin=stdin or subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=err, text=True, errors="replace")
        except FileNotFoundError:
            raise DeployError("the ssh client is not installed", "install openssh-client") from None
        expired = threading.Event()
        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        lines = []
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                on_line(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if expired.is_set():
        raise DeviceFailure("timeout", f"no answer within {timeout:.0f} s",
                            "raise --timeout for slow devices")
    if proc.returncode == 255:
        raise classify_ssh_error(stderr)
    return Completed(proc.returncode, "".join(lines), stderr)


# (pattern in ssh's stderr, kind, message, hint); the first match wins, so specific before generic.
SSH_ERRORS: tuple[tuple[str, str, str, str], ...] = (
    (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed", "host_key_mismatch",
     "host key mismatch: the device's key differs from the one in known_hosts; refused",
     "if the device was reinstalled, remove the old key with ssh-keygen -R HOST and check the new one"),
    (r"No \S+ host key is known|Host key verification failed", "host_key_unknown",
     "unknown host key: the device is not in known_hosts; refused",
     "connect once with ssh to check its key, or pass --accept-new-host-keys"),
    (r"Permission denied|Too many authentication failures", "auth",
     "authentication refused ({line})", "check the user name, --identity, or your ssh agent"),
    (r"Could not resolve hostname", "unreachable", "unreachable: host name not found", "check the address"),
    (r"closed by remote host|Broken pipe", "dropped", "connection dropped ({line})",
     "deploy again: the devices that passed are skipped, and what reached this one whole is not sent again"),
    (r"Connection refused|No route to host|Network is unreachable|timed out|Connection reset|"
     r"Connection closed|kex_exchange_identification", "unreachable", "unreachable: {reason}",
     "is the device on, on the network, and running sshd on that port?"),
)


def classify_ssh_error(stderr: str) -> DeviceFailure:
    """ssh's exit-255 message as one DeviceFailure."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("@@@")]
    last = lines[-1] if lines else "ssh failed without a message"
    for pattern, kind, message, hint in SSH_ERRORS:
        found = re.search(pattern, stderr)
        if found:
            line = next((item for item in lines if re.search(pattern, item)), last)
            reason = line.rsplit(": ", 1)[-1] if ": " in line else found.group(0)
            return DeviceFailure(kind, message.format(line=_short(line), reason=_short(reason)), hint)
    return DeviceFailure("ssh", f"ssh failed: {_short(last)}")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
