"""Paths the user names, checked before any work: inputs exist, outputs can be created.

A build reads for seconds and converts for minutes before it writes; a path that cannot work must be
refused first, in one line naming the path, never as an OSError from the last step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import EdgekilnError


def existing(path: str | Path, role: str, kind: str = "any", error: type[EdgekilnError] = EdgekilnError) -> Path:
    """`path` exists (kind 'file' / 'dir': and is one); role names it in the message, e.g. 'model'."""
    found = Path(path)
    if not found.exists():
        raise error(f"{role} {found} does not exist")
    if kind == "file" and not found.is_file():
        raise error(f"{role} {found} is not a file")
    if kind == "dir" and not found.is_dir():
        raise error(f"{role} {found} is not a directory")
    return found


def creatable(path: str | Path, role: str, error: type[EdgekilnError] = EdgekilnError) -> None:
    """`path` does not exist yet, or is replaced by the caller, and its nearest existing ancestor is a
    directory this process can create entries in (tried, not guessed from permission bits: root, read-only
    mounts and ACLs all answer truthfully to an actual attempt)."""
    target = Path(path).absolute()
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise error(f"cannot create {role} {path}: {ancestor} is a file, not a directory",
                    "choose a path below a directory")
    try:
        tempfile.TemporaryDirectory(prefix=".edgekiln-probe-", dir=ancestor).cleanup()
    except OSError as exc:
        raise error(f"cannot create {role} {path}: {ancestor} is not writable ({exc.strerror})",
                    "choose a directory you can write to") from None


def writable_file(path: str | Path, role: str, error: type[EdgekilnError] = EdgekilnError) -> Path:
    """An output file the caller will (over)write: not a directory, and its folder can take it."""
    target = Path(path)
    if target.is_dir():
        raise error(f"{role} {target} is a directory", "name a file")
    creatable(target, role, error)
    return target
