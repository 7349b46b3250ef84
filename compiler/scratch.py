"""Scratch folders a killed run leaves behind are removed by the next run, and only theirs.

A build works in `$TMPDIR/edgekiln-XXXX`; Ctrl-C and SIGTERM clean it up, SIGKILL (or a power cut) cannot. So each
scratch folder holds an OWNER file that its process keeps flock'ed while it lives: the kernel drops the lock when
the process dies, however it dies. Whoever creates a scratch folder first removes every `edgekiln-*` folder whose
OWNER it can lock: their owner is gone. Folders without an OWNER (other tools, older versions) are left alone.

While a scratch folder lives, the process's temp dir (tempfile's and $TMPDIR, which subprocesses inherit) is a
folder inside it: what the libraries a build calls make there without a name of ours (onnxruntime's profiler,
onnx2tf, TensorFlow: `tmpXXXXXXXX`) goes with the scratch folder, even when a SIGKILL stopped their clean-up.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER = ".edgekiln-owner"  # flock'ed by the process working in the folder, for as long as it lives
PREFIX = "edgekiln-"


@contextmanager
def work_dir(prefix: str = PREFIX) -> Iterator[Path]:
    """A fresh scratch folder (removed on exit), after removing those of dead runs."""
    remove_dead()
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        owner = _claim(folder)
        try:
            with _temp_inside(folder):
                yield folder
        finally:
            os.close(owner)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _temp_inside(folder: Path) -> Iterator[None]:
    """The process's temp dir is folder/tmp until exit, then what it was (tempfile's cached choice included)."""
    inner = folder / "tmp"
    inner.mkdir()
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(inner), str(inner)
    try:
        yield
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env


def remove_dead(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders under root (default: the temp dir) whose owner has died; the ones removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if _is_dead(folder / OWNER):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _claim(folder: Path) -> int:
    """Lock the OWNER file under a private name, then rename it into place: no one sees it unlocked."""
    private = folder / f"{OWNER}.{os.getpid()}"
    fd = os.open(private, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(private, folder / OWNER)
    return fd


def _is_dead(owner: Path) -> bool:
    try:
        fd = os.open(owner, os.O_RDONLY)
    except OSError:  # no OWNER: not ours, or not claimed yet
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # its owner lives
        return False
    finally:
        os.close(fd)
    return True
