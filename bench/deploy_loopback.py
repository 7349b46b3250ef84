"""Wall time of `edgekiln deploy` to a loopback sshd "device": fresh venv vs reused venv, side by side.

    python bench/deploy_loopback.py [--bundle build/mnist_cnn] [--wheels DIR] [--rounds 3]

Starts a real OpenSSH server on 127.0.0.1 (tests/integration/deploy/sshd_loopback.py), ships the
bundle's wheels with --wheels, and times three cases per round, each from a clean device directory:
  fresh      nothing on the device: copy bundle + wheels, create the venv, pip install, validate, bench
  reused     the same bundle again: probe, no copy, venv reused, validate, bench
  new bundle another build's content (a changed README), venv reused: copy bundle, validate, bench
Loopback has no network cost: on a real board the copy and the pip install take longer.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests/integration/deploy")]

import sshd_loopback  # noqa: E402

from edgekiln.compiler.deploy import DeployOptions, SshOptions  # noqa: E402
from edgekiln.compiler.deploy.remote import PreparedBundle, deploy  # noqa: E402
from edgekiln.compiler.deploy.transport import parse_destination  # noqa: E402


def sample_bundle(work: Path) -> Path:
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe

    recipe = Recipe(source=str(REPO / "sample_models/mnist_cnn.keras"), target="rpi4",
                    output=str(work / "mnist_cnn"), calib=str(REPO / "sample_models/mnist_calib.npz"),
                    calib_samples=64, bench_runs=20, quantize="int8")
    return build(recipe).output


def fill_wheels(bundle: Path, target: Path) -> Path:
    if not any(target.glob("*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "-d", str(target), "-r", str(bundle / "requirements.txt"), "pip"], check=True)
    return target


def timed(bundle: Path, options: DeployOptions, destination: str) -> tuple[float, dict]:
    """One deploy as `edgekiln deploy` does it (without the CLI's start-up and tables)."""
    start = time.perf_counter()
    prepared = PreparedBundle(bundle, options.wheels)
    try:
        outcome = deploy(prepared, parse_destination(destination), options)
    finally:
        prepared.close()
    wall = time.perf_counter() - start
    if not outcome.ok:
        raise SystemExit(f"deploy failed: {outcome.failure.one_line()}")  # type: ignore[union-attr]
    return wall, {**outcome.timings_s, **outcome.result["timings_s"]}  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--wheels", type=Path, default=Path.home() / ".cache/edgekiln-bench-wheels")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekiln-bench-") as tmp:
        work = Path(tmp)
        bundle = args.bundle or sample_bundle(work)
        wheels = fill_wheels(bundle, args.wheels)
        device = sshd_loopback.start(work / "sshd")
        device.trust()
        times: dict[str, list[float]] = {"fresh": [], "reused": [], "new bundle": []}
        try:
            for round_ in range(args.rounds):
                base = work / f"device-{round_}"
                options = DeployOptions(ssh=SshOptions(config=device.client_config), remote_dir=str(base),
                                        wheels=wheels, runs=20)
                copy = Path(shutil.copytree(bundle, work / f"bundle-{round_}"))
                for case in ("fresh", "reused"):
                    wall, parts = timed(copy, options, device.destination)
                    times[case].append(wall)
                    print(f"round {round_ + 1} {case:10s} {wall:6.2f} s  {parts}", flush=True)
                (copy / "README.md").write_text((copy / "README.md").read_text() + "\n")  # another version
                wall, parts = timed(copy, options, device.destination)
                times["new bundle"].append(wall)
                print(f"round {round_ + 1} new bundle {wall:6.2f} s  {parts}", flush=True)
        finally:
            device.stop()
    fresh = statistics.median(times["fresh"])
    print(f"\nmedian wall time over {args.rounds} rounds (loopback device, {bundle.name}):")
    for case, values in times.items():
        median = statistics.median(values)
        print(f"  {case:10s} {median:6.2f} s   {median / fresh:5.2f}x of fresh")


if __name__ == "__main__":
    main()
