"""The processes of a local Ray end with the sweep that started them, even when it is SIGKILLed.

Ray binds its GCS server and raylet to the driver (the kernel kills them when it dies), but not the agents and
workers the raylet starts: after a SIGKILLed sweep they were still running a minute later. So before ray.init the
sweep starts a watcher with a pipe from the sweep on its stdin, and marks its own environment with a token that
every Ray process inherits. When the pipe ends (the sweep is gone, however it went) the watcher kills every
process whose environment holds the token. Linux only (/proc); elsewhere nothing is started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

MARK = "EDGEKILN_RAY_SWEEP"

# One pass is not enough: a raylet still alive when the sweep dies can start an agent after it, so the watcher
# passes until two passes in a row (0.5 s apart) find nothing, for at most 30 s.
WATCHER = """
import os, signal, sys, time
token = ("{mark}=" + sys.argv[1]).encode()
sys.stdin.buffer.read()  # returns when the sweep's end of the pipe is closed: the sweep has ended


def sweep_once():
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(os.path.join("/proc", pid, "environ"), "rb") as f:
                if token in f.read().split(b"\\0"):
                    os.kill(int(pid), signal.SIGKILL)
                    found += 1
        except OSError:
            pass
    return found


quiet, deadline = 0, time.monotonic() + 30
while quiet < 2 and time.monotonic() < deadline:
    quiet = 0 if sweep_once() else quiet + 1
    time.sleep(0.5)
""".replace("{mark}", MARK)


def start() -> subprocess.Popen | None:
    """The watcher, and this process's environment marked for the Ray processes it starts; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    token = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != MARK}  # the watcher must not kill itself
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, token], stdin=subprocess.PIPE, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ[MARK] = token
    return watcher


def stop(watcher: subprocess.Popen | None) -> None:
    """After ray.shutdown(): let the watcher sweep up whatever Ray left, and wait for it."""
    if watcher is None:
        return
    os.environ.pop(MARK, None)
    assert watcher.stdin is not None, "started with a pipe"
    watcher.stdin.close()
    watcher.wait(timeout=60)
