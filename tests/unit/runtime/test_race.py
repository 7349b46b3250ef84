"""`python -m runtime race`: model files timed side by side, one p50 per file, as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[3]


def _relu_model(width: int) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_race_prints_one_p50_per_model_file(tmp_path: Path) -> None:
    files = []
    for name, width in (("00_small.onnx", 4), ("01_large.onnx", 4096)):
        (tmp_path / name).write_bytes(_relu_model(width))
        files.append(tmp_path / name)
    # Run as on the device: the runtime package from its own folder (a copy of runtime/, as a bundle has).
    done = subprocess.run([sys.executable, "-m", "runtime", "race", *map(str, files), "--runs", "3", "--rounds", "2",
                           "--threads", "1", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert sorted(result["p50_ms"]) == ["00_small.onnx", "01_large.onnx"]
    assert all(p50 > 0 for p50 in result["p50_ms"].values())
    assert (result["runs"], result["rounds"], result["threads"], result["runtime"]) == (3, 2, 1, "onnxruntime")
