"""The watcher that ends a local Ray with the sweep (compiler/sweep/ray_reaper.py), with real processes: a
"sweep" is SIGKILLed, and what it started must go, including a process whose environment no longer shows the
token (Ray's setproctitle overwrites it) and one started after the sweep died by a process it had started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.system import require

SWEEP = textwrap.dedent("""
    import os, subprocess, sys, time
    bystander = subprocess.Popen(["sleep", "300"])  # the program's own child, started before the sweep: not Ray's
    from edgekiln.compiler.sweep import ray_reaper
    ray_reaper.start()
    clean = {k: v for k, v in os.environ.items() if k != ray_reaper.MARK}  # as after Ray's setproctitle
    raylet = subprocess.Popen([sys.executable, "-c",  # marked (it inherits the token): starts an agent at once
                               "import subprocess, sys, time; "  # whose environment no longer shows the token,
                               "a = subprocess.Popen(['sleep', '300'], env={}); print(a.pid, flush=True); "
                               "time.sleep(3); "  # and another one 2 s after the sweep is gone
                               "p = subprocess.Popen(['sleep', '300'], env={}); "
                               "open(sys.argv[1], 'w').write(str(p.pid)); "
                               "time.sleep(300)", sys.argv[1]], stdout=subprocess.PIPE, text=True)
    agent = int(raylet.stdout.readline())
    print(agent, raylet.pid, bystander.pid, flush=True)
    time.sleep(300)
""")



def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(map(_alive, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_sigkilled_sweep_takes_unmarked_and_late_processes_with_it(tmp_path):
    require(None if sys.platform.startswith("linux") else "the watcher reads /proc: Linux only")
    late_pid_file = tmp_path / "late.pid"
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(late_pid_file)], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        agent, raylet, bystander = map(int, sweep.stdout.readline().split())
        time.sleep(1.5)  # the watcher notes the sweep's descendants twice a second
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        assert _gone([agent], within=10), "a process Ray's raylet started outlived the sweep"
        assert _gone([raylet], within=10)
        assert _alive(bystander), "a child of the sweep's program that is not Ray's was killed"
        late = int(late_pid_file.read_text()) if late_pid_file.exists() else None
        assert late is None or _gone([late], within=10), "a process started after the sweep died outlived it"
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(sweep.pid)], check=False)


def test_the_watcher_spares_processes_ray_did_not_start(tmp_path):
    require(None if sys.platform.startswith("linux") else "the watcher reads /proc: Linux only")
    stranger = subprocess.Popen(["sleep", "300"])
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path / "late.pid")], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        agent, _, _ = map(int, sweep.stdout.readline().split())
        time.sleep(1.5)
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait()
        assert _gone([agent], within=10)
        assert _alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
        subprocess.run(["pkill", "-KILL", "-s", str(sweep.pid)], check=False)
