"""The processes of a local Ray end with the sweep that started them, even when it is SIGKILLed.

Ray binds its GCS server and raylet to the driver (the kernel kills them when it dies), but not the agents and
workers the raylet starts: after a SIGKILLed sweep they were still running a minute later. So before ray.init the
sweep starts a watcher with a pipe from the sweep on its stdin, and marks its own environment with a token that
every Ray process inherits. While the sweep lives the watcher notes, twice a second, the marked processes descended
from it and everything they started (pid and start time). When the pipe ends (the sweep is gone, however it went)
it kills every noted process still alive, every marked one, and their descendants. A process the sweep's program
started that is not Ray's (no token, not started by one that has it) is never touched: a sweep run from the Python
API inside a bigger program must not kill that program's children.

Neither mark alone is enough: Ray's setproctitle ("ray::DashboardAgent") overwrites the memory /proc/PID/environ
reads, so an agent that has set its title no longer shows the token (but the raylet that started it, a C++
binary, still does); and a process started after the last note (the raylet starts agents late under load) was
never noted, but descends from one that was.
Linux only (/proc); elsewhere nothing is started.
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
import os, select, signal, sys, time
token, me, sweep = ("{mark}=" + sys.argv[1]).encode(), os.getpid(), os.getppid()


def table():
    # pid -> (parent pid, start time) of every process; stat's fields after the command's ')': ppid is the 2nd,
    # the start time (clock ticks since boot: a pid reused later has another) the 20th.
    rows = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/" + pid + "/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        rows[int(pid)] = (int(fields[1]), fields[19])
    return rows


def descendants(rows, roots):
    children = {}
    for pid, (parent, _) in rows.items():
        children.setdefault(parent, []).append(pid)
    found, stack = set(), list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def marked(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return token in f.read().split(b"\\0")
    except OSError:
        return False


noted = {}
while not select.select([sys.stdin], [], [], 0.5)[0]:  # readable only at its end: the sweep never writes
    rows = table()
    ray = {pid for pid in descendants(rows, [sweep]) if marked(pid)}  # the raylet, GCS: C++, their token stays
    noted.update((pid, rows[pid][1]) for pid in ray | descendants(rows, ray))


def reap_once():
    rows = table()
    ours = {pid for pid, start in noted.items() if rows.get(pid, (0, None))[1] == start}
    ours |= {pid for pid in rows if marked(pid)}
    ours = (ours | descendants(rows, ours)) - {me}
    for pid in ours:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(ours)


quiet, deadline = 0, time.monotonic() + 30
while quiet < 2 and time.monotonic() < deadline:
    quiet = 0 if reap_once() else quiet + 1
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
