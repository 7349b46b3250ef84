"""One build per model and recipe in a test session, shared by every test that reads it, on every xdist worker.

A build is keyed by its options (the output folder aside) and the bytes of every file they name (source model,
data, tokenizer, target file). The first test that asks for it builds it into the session's folder, which every
pytest-xdist worker of the run shares, under a lock: a second worker asking meanwhile waits for that bundle
instead of building its own. Tests read a shared bundle and never change it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

FILE_OPTIONS = ("source", "target", "calib", "eval", "train", "tokenizer")  # options that may name a file


def session_folder(tmp_path_factory: Any) -> Path:
    """The folder of this test run that every xdist worker sees (a worker's basetemp is inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_key(options: dict[str, Any]) -> str:
    """A digest of the options and of the bytes of every file or folder they name."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode())
    for name in FILE_OPTIONS:
        path = Path(str(options.get(name) or ""))
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(f"{name}:{file.relative_to(path) if path.is_dir() else ''}:".encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:20]


def shared_build(folder: Path, **options: Any) -> Path:
    """The bundle `edgekiln.build(**options)` writes, built on first use in `folder` by whichever test (and
    worker) asks first; `output` is chosen here. A build that failed is tried again by the next test asking."""
    import edgekiln

    out = folder / "shared-builds" / build_key(options)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the build raised
        if not (out / "manifest.json").is_file():  # the bundle is written whole (bundle.write), or not at all
            edgekiln.build(**options, output=str(out))
    return out
