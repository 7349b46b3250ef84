"""The device side of `edgekiln deploy`: run by the device's own python3, never imported by the compiler.

This file is `probe` (what the device is and already has) and what every agent command shares (the
`@@edgekiln` lines, Failure, the paths under DIR, the command line); `run` and `race` are agent_run.py.
The host sends this file's text over ssh on stdin for `probe`, and inside the upload tar beside
agent_run.py (which imports it) and agent_keep.py for `run` and `race`, so it must stay stdlib-only and
run on Python >= 3.8 (Raspberry Pi OS Bullseye ships 3.9).

    python3 - probe --base DIR --bundle VERSION --req-hash HASH          (script on stdin)
    python3 agent_run.py run --base DIR --bundle VERSION --req-hash HASH --incoming TOKEN [--keep N --runs N ...]
    python3 agent_run.py race ... --incoming TOKEN   (build --device: time the uploaded candidates/ side by side)

Every line meant for the host starts with `@@edgekiln `: `stage NAME`, then `probe {json}` or
`result {json}` or `error {json}` (exit 3). Anything else on stdout (login-shell noise) is ignored.
Layout under DIR: bundles/VERSION (one per bundle content), venvs/KEY (one per requirements + Python),
incoming/TOKEN (the upload, removed at the end), results/VERSION.json (the last result, kept on the device),
locks/VERSION.lock (held by every run of VERSION), deploy-sequence (the order of deploys, for --keep).
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the host's names for what the agent sends it; the device needs none of them
    from edgekiln.compiler.deploy.agent_messages import Facts

MARK = "@@edgekiln "
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd41": "Cortex-A78", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
             "0xd4b": "Cortex-A78C", "0xc07": "Cortex-A7", "0xc08": "Cortex-A8", "0xc09": "Cortex-A9"}


class Failure(Exception):
    """A failure the host shows as one line: kind (for the host's table), message, hint."""

    def __init__(self, kind: str, message: str, hint: str = "", **extra: object) -> None:
        super().__init__(message)
        self.payload = {"kind": kind, "message": message, "hint": hint, **extra}


def emit(kind: str, payload: object = None) -> None:
    line = MARK + kind + ("" if payload is None else " " + json.dumps(payload))
    print(line, flush=True)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return ""


def cpu_name() -> str:
    """`model name` on x86; on ARM (no model name) the core from the CPU part number."""
    parts = []
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name":
            return value
        if key == "CPU part":
            parts.append(ARM_PARTS.get(value.lower(), "ARM part " + value))
    if parts:
        return ", ".join(f"{parts.count(p)}x {p}" for p in sorted(set(parts)))
    return platform.processor() or platform.machine()


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def ram_mb() -> int | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def free_mb(path: str) -> int:
    """Free space where `path` is (or would be created)."""
    while not os.path.exists(path):
        path = os.path.dirname(path) or "."
    return shutil.disk_usage(path).free // 2**20


def facts(base: str) -> Facts:
    return {"hostname": socket.gethostname(), "board": _read("/proc/device-tree/model") or None,
            "cpu": cpu_name(), "cores": os.cpu_count(), "machine": platform.machine(),
            "kernel": platform.release(), "os": os_name(), "python": platform.python_version(),
            "python_executable": sys.executable, "ram_mb": ram_mb(), "free_mb": free_mb(base)}


def venv_key(req_hash: str) -> str:
    """One venv per (requirements, base interpreter): the same pins on another Python need new wheels."""
    ident = req_hash + os.path.realpath(sys.executable) + sys.version
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


class Paths(NamedTuple):
    """Where a run's things are on the device: the agent's base directory, this bundle version's directory, the
    venv for its requirements, and the upload's directory (removed at the end)."""

    base: str
    bundle: str
    venv: str
    incoming: str


def paths(args: argparse.Namespace) -> Paths:
    base = os.path.abspath(os.path.expanduser(args.base))
    return Paths(base, os.path.join(base, "bundles", args.bundle), os.path.join(base, "venvs", venv_key(args.req_hash)),
                 os.path.join(base, "incoming", args.incoming or "none"))


def clear_broken_uploads(base: str) -> None:
    """Remove every incoming/* whose lock nobody holds: an upload whose connection dropped or whose process
    was killed (a live one is locked by agent_upload.py, then by the agent it became, until it exits)."""
    incoming = os.path.join(base, "incoming")
    if not os.path.isdir(incoming):
        return
    os.makedirs(os.path.join(base, "locks"), exist_ok=True)
    with open(os.path.join(base, "locks", "incoming.lock"), "a") as guard:  # agent_upload.py's, too
        fcntl.flock(guard, fcntl.LOCK_EX)
        for name in os.listdir(incoming):
            where = os.path.join(incoming, name)
            if not os.path.isdir(where) or os.path.islink(where):
                continue
            held = os.open(where, os.O_RDONLY)
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(where, ignore_errors=True)
            except BlockingIOError:
                pass  # a deploy in progress
            finally:
                os.close(held)


def probe(args: argparse.Namespace) -> None:
    p = paths(args)
    clear_broken_uploads(p.base)  # before measuring free space: what they held is free again
    emit("probe", {"facts": facts(p.base), "base": p.base,
                   "bundle_present": os.path.isfile(os.path.join(p.bundle, "manifest.json")),
                   "venv_ready": os.path.isfile(os.path.join(p.venv, ".edgekiln-complete"))})


def serve(commands: dict[str, Callable[[argparse.Namespace], None]], argv: list | None = None) -> int:
    """Parse the agent's command line and run the command named in it; a Failure or an OSError becomes the
    host's `error` line and exit 3. `commands`: this file's `probe`, or agent_run.py's `run` and `race`."""
    parser = argparse.ArgumentParser(prog="edgekiln-agent")
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument("--base", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--req-hash", required=True)
    parser.add_argument("--incoming", default=None)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep", type=int, default=0)  # 0: remove nothing
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    try:
        if sys.version_info < (3, 8):  # noqa: UP036  (this file runs on the device's Python, not ours)
            raise Failure("no_python", f"the device's python3 is {platform.python_version()}, older than 3.8")
        commands[args.command](args)
    except Failure as exc:
        emit("error", exc.payload)
        return 3
    except OSError as exc:
        kind = "disk_full" if exc.errno == errno.ENOSPC else "device"
        emit("error", {"kind": kind, "message": f"{type(exc).__name__}: {exc}", "hint": ""})
        return 3
    return 0


def main(argv: list | None = None) -> int:
    return serve({"probe": probe}, argv)


if __name__ == "__main__":
    sys.exit(main())
