"""What K-fold cross-fitting of the int8 candidates costs: per sample model, the wall time of a default build
(`edgekiln build M --target rpi4 --calib C`, --quantize auto) of one code tree beside another's, and the samples
each judged its candidates on.

    .venv/bin/python bench/bench_crossfit.py --before /tmp/tree_before [--after . [/tmp/tree2 ...]]
                                              [--samples 100,300] [--repeats 1]
                                              [--cases mnist_cnn,mnist_resnet,mnist_dwsep_nchw]

`--before` / `--after` are checkouts of the repository (e.g. `git archive <commit> | tar -x -C DIR`); each
build runs in a subprocess with EDGEKILN_ROOT set to its tree (the editable install follows it), the trees
interleaved build by build so that another job's load falls on all alike (several `--after` trees: one line each,
every ratio to the same `--before` builds). `--samples`: the first N calibration samples (100 is the common case
of a user with unlabelled data). Prints wall seconds and CPU seconds (user + system of the build and its
subprocesses: what a shared, loaded machine distorts least) before / after with their ratios, and the samples
judged (`quantization.data.judging_samples`, `judged_by`) and the shipped variant of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SITE = "/work/wta_site"  # sitecustomize that points the editable install at $EDGEKILN_ROOT
CASES = ("mnist_cnn", "mnist_resnet", "mnist_dwsep_nchw")


def _case(name: str) -> tuple[Path, Path]:
    if name.endswith("_nchw"):
        return SAMPLES / f"{name}.onnx", SAMPLES / "mnist_calib_nchw.npz"
    return SAMPLES / f"{name}.keras", SAMPLES / "mnist_calib.npz"


def _first(calib: Path, n: int, work: Path) -> Path:
    with np.load(calib) as data:
        path = work / f"{calib.stem}_{n}.npz"
        np.savez(path, **{k: data[k][:n] for k in data.files})
    return path


def _build(tree: Path, model: Path, calib: Path, out: Path) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (user + system of the build and its subprocesses) and the manifest."""
    env = {**os.environ, "EDGEKILN_ROOT": str(tree), "PYTHONPATH": SITE}
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "edgekiln.compiler", "build", str(model), "--target", "rpi4",
                    "--calib", str(calib), "--output", str(out)], env=env, check=True, cwd=tree,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, _children_cpu() - cpu, json.loads((out / "manifest.json").read_text())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _judged(manifest: dict) -> str:
    data = manifest["quantization"]["data"]
    how = data.get("judged_by", "held-back")
    return f"{data['judging_samples']} ({how})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, nargs="+", default=[ROOT])
    parser.add_argument("--samples", default="100,300")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{'model':18}{'N':>5}{'wall before':>12}{'after':>7}{'ratio':>7}{'CPU before':>11}{'after':>7}{'ratio':>7}"
          "  judged before -> after; shipped; after tree")
    trees = {"before": args.before, **{f"after {i + 1}": tree for i, tree in enumerate(args.after)}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.cases.split(","):
            model, calib = _case(name)
            for n in (int(s) for s in args.samples.split(",")):
                subset = _first(calib, n, work)
                walls: dict[str, list[float]] = {label: [] for label in trees}
                cpus: dict[str, list[float]] = {label: [] for label in trees}
                manifests: dict[str, dict] = {}
                for r in range(args.repeats):
                    for i, (label, tree) in enumerate(trees.items()):
                        wall, cpu, manifests[label] = _build(tree, model, subset, work / f"{name}_{n}_{i}_{r}")
                        walls[label].append(wall)
                        cpus[label].append(cpu)
                before, cpu_before = min(walls["before"]), min(cpus["before"])
                for label, tree in list(trees.items())[1:]:
                    after, cpu_after = min(walls[label]), min(cpus[label])
                    shipped = f"{manifests['before']['quantization']['variant']} -> " \
                              f"{manifests[label]['quantization']['variant']}"
                    print(f"{name:18}{n:>5}{before:>12.1f}{after:>7.1f}{after / before:>7.2f}{cpu_before:>11.1f}"
                          f"{cpu_after:>7.1f}{cpu_after / cpu_before:>7.2f}  "
                          f"{_judged(manifests['before'])} -> {_judged(manifests[label])}; {shipped}; {tree}",
                          flush=True)


if __name__ == "__main__":
    main()
