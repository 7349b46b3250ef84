"""What the build-fault tests share: a tiny ONNX classifier (no TensorFlow: cheap to build), a build started in a
subprocess and paused at a stage (paused_build.py), a tmpfs to fill or make read-only, a bundle's fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tests.system import require

DRIVER = Path(__file__).with_name("paused_build.py")


def write_mlp(root: Path) -> dict[str, Path]:
    """x [N, 8] -> Gemm 8->16 -> Relu -> Gemm 16->4 -> Softmax, with calibration and evaluation data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(0, 0.3, (16, 8)), "b1": np.zeros(16), "w2": rng.normal(0, 0.3, (4, 16)),
               "b2": np.zeros(4)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], name="fc2", transB=1),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "mlp.onnx")
    x = rng.normal(size=(60, 8)).astype(np.float32)
    np.savez(root / "calib.npz", x=x[:40])
    np.savez(root / "eval.npz", x=x[40:])
    return {"model": root / "mlp.onnx", "calib": root / "calib.npz", "eval": root / "eval.npz"}


def build_args(mlp: dict[str, Path], output: Path) -> list[str]:
    """The quickest build there is: float32 ONNX, no TensorFlow, few timed runs; --force replaces the old bundle."""
    return [str(mlp["model"]), "-t", "rpi4", "--calib", str(mlp["calib"]), "--eval", str(mlp["eval"]),
            "-o", str(output), "--quantize", "none", "--format", "onnx", "--runs", "5", "--force"]


def build_env(tmp: Path) -> dict[str, str]:
    """The environment of a build subprocess: its own temp folder, so that what it leaves there can be listed."""
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "200"}


def run_build(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekiln.compiler.cli", "build", *args], env=env,
                          capture_output=True, text=True, timeout=600)


class PausedBuild:
    """A build subprocess paused at `where` (see paused_build.py) until resume(), or killed there."""

    def __init__(self, where: str, args: list[str], env: dict[str, str], marker: Path) -> None:
        self.marker = marker
        self.process = subprocess.Popen([sys.executable, str(DRIVER), where, str(marker), *args], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        deadline = time.monotonic() + 300
        while not marker.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                out, err = self.process.communicate()
                raise AssertionError(f"the build never reached {where!r}:\n{out[-2000:]}\n{err[-2000:]}")
            time.sleep(0.05)

    def resume(self) -> subprocess.CompletedProcess:
        self.marker.unlink()
        return self.finish()

    def signal(self, number: int) -> subprocess.CompletedProcess:
        """Send the signal to the build (SIGKILL: to its whole process group), wait for it to end."""
        if number == signal.SIGKILL:
            os.killpg(self.process.pid, number)
        else:
            self.process.send_signal(number)
        return self.finish()

    def finish(self) -> subprocess.CompletedProcess:
        out, err = self.process.communicate(timeout=600)
        self.marker.unlink(missing_ok=True)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under folder by relative path, with its sha256: equal fingerprints, identical trees."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def left_in_temp(tmp: Path) -> set[str]:
    """What the builds left in their temp folder; onnxruntime's `.ses` (an id file every run reuses) aside."""
    return names(tmp) - {".ses"}


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The build's error: its stderr's only line, starting 'error: ' (no traceback, no second line)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


@contextmanager
def tmpfs(folder: Path, size: int) -> Iterator[Path]:
    """A real filesystem of `size` bytes mounted at folder (skipped where this process may not mount)."""
    folder.mkdir()
    mount = shutil.which("mount")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(folder)],
                          capture_output=True, text=True) if mount else None
    require(None if done and done.returncode == 0 else
            f"mounting a tmpfs needs root and mount(8) ({done.stderr.strip() if done else 'no mount'}): "
            "the disk-full and read-only build faults are untested here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


def used_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def sweep_args(mlp: dict[str, Path], output: Path, *extra: str, prunes: str = "0") -> list[str]:
    """A sweep of quick points over the MLP: float32 and int8 ONNX at each prune setting."""
    return [str(mlp["model"]), "-t", "rpi4", "--calib", str(mlp["calib"]), "--eval", str(mlp["eval"]),
            "-o", str(output), "--quantize", "float32,int8", "--prune", prunes, "--format", "onnx", "--runs", "5",
            *extra]


def start_sweep(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`edgekiln sweep ARGS` in a session of its own (its pid is the session id: pgrep -s finds what it left)."""
    return subprocess.Popen([sys.executable, "-m", "edgekiln.compiler.cli", "sweep", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 300) -> None:
    """Poll until condition() holds; fail, killing the process group, if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise AssertionError(f"never saw {what}:\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.1)


def session_left(session: int, grace: float = 20) -> list[str]:
    """The processes still in the session after up to `grace` seconds (their command lines): none, if all went.
    Those left are then killed (the session's first process group is the sweep's: its leader's pid)."""
    deadline = time.monotonic() + grace
    while True:
        done = subprocess.run(["pgrep", "-a", "-s", str(session)], capture_output=True, text=True)
        if not done.stdout.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session, signal.SIGKILL)
    return done.stdout.strip().splitlines()
