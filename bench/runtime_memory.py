"""Peak RSS of the device-side process per interpreter: the runtime base of compat's RAM check.

    python bench/runtime_memory.py [--repeats 3] [--threads 4] [--python OTHER_PYTHON ...]

Every cell is a fresh `python -c ...` child reading its own resource.getrusage(RUSAGE_SELF).ru_maxrss,
started through /bin/sh so that it inherits neither another stage's peak nor this process's.
Stages, cumulative: numpy alone; + the interpreter imported (as runtime/backends.py imports it);
+ the interpreter created on a tiny model through the bundle runtime's own backend; + one
inference. The tiny model (Dense 8 -> 2 + ReLU, both formats, under 1 KB) is built here, once,
in the parent: the children import nothing but numpy, runtime/ and the interpreter.

The base is the highest peak over the repeats of `created + 1 run` minus the model's own bytes
(its arena is a few bytes), rounded up to a whole MB: compat.memory_mb adds the model and its
activations on top. `--python` adds the TFLite cases run by another interpreter (e.g. a venv
holding tflite-runtime); runtime/backends.py picks whichever TFLite package that Python has.
Figures are of THIS host (x86_64); the device's process is of the same order, not the same.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("numpy", "import", "create", "run")
MB = 2**20

# One child per (stage, format): stdout is one JSON line {package, version, peak_kb}.
CHILD = """
import json, resource, sys
import numpy as np
stage, fmt, path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
package = version = "numpy"
if stage != "numpy":
    from edgekiln.runtime import backends
    if fmt == "tflite":
        _, package, version = backends.tflite_interpreter_class()
    else:
        import onnxruntime
        package, version = "onnxruntime", onnxruntime.__version__
if stage in ("create", "run"):
    model = backends.open_backend(fmt, open(path, "rb").read(), threads)
    if stage == "run":
        model.run([np.zeros([max(d, 1) for d in i.shape], i.dtype) for i in model.inputs])
print(json.dumps({"package": package, "version": version,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def tiny_models(work: Path) -> dict[str, Path]:
    """The same Dense 8 -> 2 + ReLU as .tflite (TF converter) and .onnx (onnx.helper)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(8, 2)).astype(np.float32), np.zeros(2, np.float32)
    return {"tflite": _tflite(w, b, work / "tiny.tflite"), "onnx": _onnx(w, b, work / "tiny.onnx")}


def _tflite(w: np.ndarray, b: np.ndarray, path: Path) -> Path:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf  # noqa: PLC0415  (only to build the tiny model; the children never import it)

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def dense(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.matmul(x, w) + b)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([dense.get_concrete_function()], dense)
    path.write_bytes(converter.convert())
    return path


def _onnx(w: np.ndarray, b: np.ndarray, path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def measure(python: str, stage: str, fmt: str, model: Path, threads: int) -> dict:
    """One fresh child: its peak RSS in MB and the interpreter package it used."""
    # Through `sh -c '...; exit'`, which forks the child instead of exec'ing it: Linux carries ru_maxrss
    # across fork + execve, so a direct child of this process (600+ MB once TensorFlow built the
    # tiny model) would report our peak, not its own. sh's is a few MB, below any child's.
    command = ["/bin/sh", "-c", '"$@"; exit $?', "sh", python, "-c", CHILD, stage, fmt, str(model), str(threads)]
    out = subprocess.run(command, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
                         capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return {**found, "mb": found["peak_kb"] / 1024}


def cases(pythons: list[str]) -> list[tuple[str, str]]:
    """(python, format): this Python for both formats, each extra Python for TFLite only."""
    return [(sys.executable, "tflite"), (sys.executable, "onnx"), *[(p, "tflite") for p in pythons]]


def run_all(pythons: list[str], repeats: int, threads: int, models: dict[str, Path]) -> dict:
    """{(package==version, python): {stage: [MB per repeat]}}, repeats interleaved so drift hits all."""
    table: dict[tuple[str, str], dict[str, list[float]]] = {}
    for _ in range(repeats):
        for python, fmt in cases(pythons):
            cells = {stage: measure(python, stage, fmt, models[fmt], threads) for stage in STAGES}
            key = (f"{cells['run']['package']}=={cells['run']['version']}", python)
            for stage, cell in cells.items():
                table.setdefault(key, {}).setdefault(stage, []).append(cell["mb"])
            table[key]["model_bytes"] = [models[fmt].stat().st_size]
    return table


def report(table: dict) -> None:
    """Per run and per interpreter: each stage's peak, then the base and the TOML line for it."""
    print(f"{'interpreter':28} {'run':>3} " + " ".join(f"{s:>8}" for s in STAGES) + "   (peak RSS, MB)")
    for (pin, python), cells in table.items():
        for i in range(len(cells["numpy"])):
            print(f"{pin:28} {i + 1:>3} " + " ".join(f"{cells[s][i]:8.1f}" for s in STAGES))
        spread = " ".join(f"{max(cells[s]) - min(cells[s]):8.1f}" for s in STAGES)
        print(f"{'':28} {'+-':>3} {spread}   (max - min over runs; python {python})")
    print("\n# per-interpreter base: max over runs of the `run` peak minus the model's bytes, rounded up")
    for (pin, _), cells in table.items():
        base = math.ceil(max(cells["run"]) - cells["model_bytes"][0] / MB)
        print(f'"{pin.split("==")[0]}" = {base}.0   # {pin}; numpy alone {max(cells["numpy"]):.1f} MB, '
              f'interpreter adds {max(cells["run"]) - max(cells["numpy"]):.1f} MB')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="interpreter threads (the Pi 4's default)")
    parser.add_argument("--python", action="append", default=[], help="another Python to run TFLite cases in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekiln-rss-") as work:
        models = tiny_models(Path(work))
        print(f"tiny model: tflite {models['tflite'].stat().st_size} B, onnx {models['onnx'].stat().st_size} B; "
              f"threads {args.threads}\n")
        report(run_all(args.python, args.repeats, args.threads, models))


if __name__ == "__main__":
    main()
