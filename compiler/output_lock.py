"""One build at a time per output: a lock beside the bundle, and the leftovers of a killed build undone under it.

`.NAME.lock` beside the output NAME is flock'ed for the whole build: a second build to the same -o is refused at
once ("busy") instead of racing the first to the rename. The kernel drops a flock when its process dies, however
it dies (SIGKILL included), so a killed build never leaves the output locked. The holder unlinks the file when it
is done; whoever locks the file checks that it is still the one at that path (not one unlinked meanwhile).

Whoever holds the lock is the only writer of the output's staging folders, so any it finds are a dead build's:
a half-written `.NAME.partial-*` is removed, and an old bundle moved aside (`.NAME.old`) goes back if the new one
never arrived.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from edgekiln.compiler.errors import OutputError


def staging_prefix(output: Path) -> str:
    """The name prefix of the folder a bundle is written into before it is renamed to `output`."""
    return f".{output.name}.partial-"


def aside(output: Path) -> Path:
    """Where an old bundle waits while the new one is renamed in (when the two cannot be exchanged at once)."""
    return output.with_name(f".{output.name}.old")


@contextmanager
def hold(output: Path) -> Iterator[None]:
    """Hold the output's lock for the block; OutputError at once if another build holds it."""
    made = _make_parents(output.parent)
    path = output.with_name(f".{output.name}.lock")
    fd = _acquire(path, output)
    try:
        recover(output)
        yield
    finally:
        _release(path, fd)
        for folder in reversed(made):  # folders this build made for a bundle it did not write
            _remove_if_empty(folder)


def recover(output: Path) -> None:
    """Undo what a killed build left beside `output` (call it holding the lock)."""
    for staging in output.parent.glob(f"{staging_prefix(output)}*"):
        shutil.rmtree(staging, ignore_errors=True)
    old = aside(output)
    if old.is_dir() and not output.exists() and (old / "manifest.json").is_file():
        old.rename(output)  # killed between moving the old bundle aside and renaming the new one in
    shutil.rmtree(old, ignore_errors=True)


def _acquire(path: Path, output: Path) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # not open for writing: a remount ro stays possible
        except OSError as exc:
            raise OutputError(f"cannot create output {output}: {exc.strerror}", "choose another -o") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise OutputError(f"output {output} is busy: another edgekiln build{holder} is writing it",
                              "wait for it to finish, or choose another -o") from None
        if _same_file(fd, path):
            _write_pid(path)
            return fd
        os.close(fd)  # its holder unlinked it after we opened it: lock the file now at that path


def _release(path: Path, fd: int) -> None:
    with suppress(OSError):  # removed with its folder, or a read-only folder: the next build takes it over
        path.unlink()  # before closing: whoever opened it meanwhile sees it is no longer at the path
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


def _write_pid(path: Path) -> None:
    with suppress(OSError):  # a full disk: the lock holds without the pid, which only names the holder in a message
        path.write_text(f"{os.getpid()}\n")


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" (pid {text})" if text.isdigit() else ""


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create the folder {folder}: {exc.strerror}", "choose another -o") from None
        made.append(folder)
    return made


def _remove_if_empty(folder: Path) -> None:
    with suppress(OSError):  # not empty (the bundle is in it), or gone
        folder.rmdir()
