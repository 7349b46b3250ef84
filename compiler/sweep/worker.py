"""Build one sweep point, in whatever process runs it (the driver, a spawned pool worker, a Ray worker).

Takes the recipe as a plain dict and returns a PointResult (plain data: the row and the bundle's bytes), so the
same function crosses a process pool and a Ray cluster. A point that cannot be built is a row with its one-line
reason, never an exception that stops the sweep.
"""

from __future__ import annotations

import ctypes
import io
import os
import signal
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekiln.compiler.sweep.sweep_json import PointOutcome, PointRow

if TYPE_CHECKING:
    from edgekiln.compiler.manifest_schema import Manifest

# Each worker caps its own threads: N workers on a host must not each start one thread per core.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class PointResult:
    """What building one point gave: its row (what its manifest measured, or why it was not built) and, when
    built, its bundle as tar bytes."""

    row: PointOutcome
    bundle_tar: bytes | None = None


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps a worker at `threads` compute threads (set before TensorFlow loads)."""
    return {**{name: str(threads) for name in THREAD_VARIABLES}, "TF_NUM_INTEROP_THREADS": "1"}


def start_worker(threads: int, sweep_pid: int) -> None:
    """A pool worker's initializer, in the fresh (spawned) process before it imports TensorFlow: cap its threads,
    and end it with the sweep however the sweep ends (SIGKILL included: a worker outliving it builds a point
    nobody will save, and holds the sweep's output pipes open)."""
    os.environ.update(thread_env(threads))
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1  # the kernel signals this process when its parent dies
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != sweep_pid:  # the sweep died before the line above
        os._exit(1)


def build_point(recipe: dict[str, Any]) -> PointResult:
    """Build the point's bundle in a scratch folder of this worker; its row (what the manifest measured, or
    the error) and the bundle as tar bytes, so that a worker on another machine needs no shared disk for
    its output (it does need the source and data paths)."""
    from edgekiln.compiler.errors import EdgekilnError, first_line
    from edgekiln.compiler.pipeline import build
    from edgekiln.compiler.recipe import Recipe
    from edgekiln.compiler.scratch import work_dir

    with work_dir("edgekiln-point-") as scratch:  # removed by the next run if this worker is killed
        out = scratch / "bundle"
        try:
            manifest = build(Recipe(**{**recipe, "output": str(out), "force": False})).manifest
        except EdgekilnError as exc:
            return PointResult({"error": first_line(exc)})
        except Exception as exc:  # noqa: BLE001  (a converter's crash fails this point, not the sweep)
            return PointResult({"error": f"{type(exc).__name__}: {first_line(exc)}"})
        return PointResult(row_of(manifest), _tar(out))


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def untar(data: bytes, folder: Path) -> None:
    """A point's bundle from build_point into `folder` (which must not exist); plain files only."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(folder, filter="data")


def row_of(m: Manifest) -> PointRow:
    """The sweep's columns of one built point, from its manifest."""
    accuracy, fidelity, model = m.get("accuracy"), m["fidelity"], m["model"]
    estimate = m["latency"]["target_estimate"]
    return {"variant": (m["quantization"] or {}).get("variant"), "sha256": model["sha256"], "bytes": model["bytes"],
            "params": model["params"], "macs": model["macs"],
            "accuracy": accuracy["compiled"] if accuracy else None,
            "accuracy_drop": accuracy["drop"] if accuracy else None,
            "reference_accuracy": accuracy["reference"] if accuracy else None,
            "sqnr_db": fidelity.get("sqnr_db"), "agreement": fidelity.get("top1_agreement"),
            "cosine_mean": fidelity.get("cosine_mean"), "cosine_p5": fidelity.get("cosine_p5"),
            "estimate_ms": estimate["p50_ms"] if estimate else None,
            "worker_p50_ms": m["latency"]["host"]["p50_ms"]}
