"""Load (issue 38, deliverable 5): a fleet of loopback sshd "devices", a third of them faulty, and a sweep of 24 points
with --jobs 2 and on a local Ray. Prints every figure; asserts nothing about time (that is this host's).

    python bench/fleet_load.py --bundle DIR [--wheels DIR] [--devices 32] [--parallel 8] [--points 24] [--skip-sweep]

Fleet: `edgekiln deploy --inventory` over N devices (tests/integration/deploy/fault_devices.py: each its own home,
sharing one venv made before the clock starts), a third of them faulty, in turn refused (no sshd on the port), slow
(their upload answered 5 s late) and dropping (the connection drops mid-upload); every row is checked against what
its device was made to do. The total is set beside (devices / parallel) x one deploy to one healthy device, timed
the same way.
Sweep: `edgekiln sweep` of the tiny ONNX MLP (tests/integration/faults.py), PRUNES x {float32, int8}; all rows
built, no process of the sweep's session left after it (pgrep -s), and the peak of the summed RSS of its processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests/integration/deploy")]

import fault_devices  # noqa: E402
import sshd_loopback  # noqa: E402

from tests.integration.faults import sweep_args, write_mlp  # noqa: E402

SLOW_S = 5.0


def cli(*args: object, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "240",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "edgekiln.compiler.cli", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **popen)


class SessionRss:
    """Samples the summed RSS of every process in a session (the command's, its workers', Ray's) every 0.2 s."""

    def __init__(self, session: int) -> None:
        self.session, self.peak_mb, self._stop = session, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.getsid(int(pid)) == self.session:
                        total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError):
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            time.sleep(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def left_in(session: int) -> list[str]:
    time.sleep(3)
    return subprocess.run(["pgrep", "-a", "-s", str(session)], capture_output=True, text=True).stdout.split("\n")[:-1]


def deploy(bundle: Path, inventory: Path, client: sshd_loopback.LoopbackDevice, parallel: int,
           wheels: Path) -> tuple[float, subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    process = cli("deploy", bundle, "--inventory", inventory, "--parallel", parallel, "-F", client.client_config,
                  "--remote-dir", "edgekiln", "--runs", "5", "--keep", "0", "--wheels", wheels, "--again")
    rss = SessionRss(process.pid)
    out, err = process.communicate()
    return time.perf_counter() - start, subprocess.CompletedProcess(process.args, process.returncode, out, err), \
        rss.stop()


def fleet(args: argparse.Namespace, work: Path) -> None:
    args.bundle = Path(shutil.copytree(args.bundle, work / "bundle"))  # deploys write measurements/ into it
    client = sshd_loopback.start(work / "client")
    venvs = work / "venvs"
    venvs.mkdir()
    one = fault_devices.start(work / "one", client, args.wheels, venvs=venvs)
    (work / "one.txt").write_text(one.destination + "\n")
    warm = deploy(args.bundle, work / "one.txt", client, 1, args.wheels)  # makes the shared venv
    assert warm[1].returncode == 0, warm[1].stderr
    singles = [deploy(args.bundle, work / "one.txt", client, 1, args.wheels)[0] for _ in range(3)]
    single = sorted(singles)[1]
    n, faulty = args.devices, round(args.devices / 3)
    kinds = [("refused", "slow", "drop")[k % 3] if k < faulty else "ok" for k in range(n)]
    expected: dict[str, str] = {}
    devices = []
    for k, kind in enumerate(kinds):
        if kind == "refused":
            expected[f"{client.user}@127.0.0.1:{sshd_loopback.free_port()}"] = "unreachable"
            continue
        d = fault_devices.start(work / f"d{k}", client, args.wheels, venvs=venvs)
        if kind in ("slow", "drop"):
            d.arm(kind, SLOW_S if kind == "slow" else 64 * 1024)
        expected[d.destination] = {"slow": "PASS", "drop": "dropped", "ok": "PASS"}[kind]
        devices.append(d)
    (work / "fleet.txt").write_text("".join(f"{dest}\n" for dest in expected))
    try:
        total, done, rss = deploy(args.bundle, work / "fleet.txt", client, args.parallel, args.wheels)
    finally:
        for d in [one, *devices]:
            d.stop()
        client.stop()
    cells = [line.split("│") for line in done.stdout.splitlines() if line.startswith("│ ")]
    rows = {c[1].strip(): c[6].strip() for c in cells if len(c) > 6}
    wrong = {dest: (want, rows.get(dest)) for dest, want in expected.items() if rows.get(dest) != want}
    ideal = n / args.parallel * single
    print(f"fleet: {n} devices, --parallel {args.parallel}: {kinds.count('refused')} refused, "
          f"{kinds.count('slow')} slow (+{SLOW_S:.0f} s), {kinds.count('drop')} dropping, {kinds.count('ok')} healthy")
    print(f"  rows: {len(rows)} of {n}, every row as its device was made to behave: {not wrong}"
          + (f" (wrong: {wrong})" if wrong else ""))
    print(f"  exit {done.returncode}: {done.stderr.strip()[:160]}")
    print(f"  one deploy (healthy device, venv reused, median of 3): {single:.2f} s")
    print(f"  total {total:.1f} s vs (devices / parallel) x one deploy = {ideal:.1f} s: {total / ideal:.2f}x")
    print(f"  peak RSS of the deploy command's session (CLI + ssh clients): {rss:.0f} MB")


def sweep(args: argparse.Namespace, work: Path) -> None:
    mlp = write_mlp(work)
    prunes = ",".join(f"{0.05 * k:.2f}" for k in range(args.points // 2))
    for engine in (["--jobs", "2"], ["--jobs", "2", "--executor", "ray"]):
        out = work / f"sweep-{engine[-1]}"
        start = time.perf_counter()
        process = cli("sweep", *sweep_args(mlp, out, *engine, prunes=prunes))
        rss = SessionRss(process.pid)
        _, err = process.communicate()
        wall, peak = time.perf_counter() - start, rss.stop()
        points = json.loads((out / "sweep.json").read_text())["points"] if process.returncode == 0 else []
        built = [p for p in points if "error" not in p]
        print(f"sweep {' '.join(engine)}: exit {process.returncode}, {len(built)} of {len(points)} points built "
              f"(asked {args.points}), {wall:.0f} s, peak summed RSS of its processes {peak:.0f} MB, "
              f"processes left after it: {left_in(process.pid) or 'none'}" + (f"\n  {err[-500:]}" if err and
                                                                                 process.returncode else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle to deploy (edgekiln build ...)")
    parser.add_argument("--wheels", type=Path, default=next((Path.home() / ".cache/edgekiln-test-wheels").glob("*"),
                                                            None))
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--points", type=int, default=24)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekiln-load-") as tmp:
        if not args.skip_fleet:
            fleet(args, Path(tmp))
        if not args.skip_sweep:
            sweep(args, Path(tmp))


if __name__ == "__main__":
    main()
