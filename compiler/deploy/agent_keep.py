"""The device side of `deploy --keep N`: old versions of a bundle, and venvs no bundle uses, leave the device.

Sent beside agent.py in the upload and imported by it (stdlib only, Python >= 3.8, like the agent).
A bundle directory is the agent's only if it holds DEPLOY_RECORD naming that directory; the agent writes
it when it places or reuses a bundle. Versions are ordered by a device-wide deploy sequence, not by clock
or mtime (a Pi without a clock can boot in 1970). Every run holds a shared lock on locks/VERSION.lock and
on venvs/KEY.lock; removal takes the exclusive lock without waiting and skips what is held, so a deploy
in progress never loses its bundle or its venv. The bundle just deployed is never a candidate.
A venv is removed only when every bundle on the device has a deploy record (which lists the venvs it
used) and none lists it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # the host's names for what the agent sends it; the device needs none of them
    from edgekiln.compiler.deploy.agent_messages import DeployRecord, PruneReport, Removal

DEPLOY_RECORD = ".edgekiln-deploy.json"
REMOVING = ".edgekiln-removing-"  # a version being removed: renamed first, so no one sees it half-deleted
VERSION = re.compile(r"^(?P<name>.+)-[0-9a-f]{12}$")
VENV = re.compile(r"^[0-9a-f]{16}$")


def acquire(path: str, exclusive: bool, wait: bool = True) -> IO[str] | None:  # the open file holds the lock
    """flock `path`; None when not waiting and it is held. A remover unlinks a lock file while holding it
    exclusively, so re-open until the file locked is the one at `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    while True:
        f = open(path, "a")  # noqa: SIM115  (returned open: the lock lives as long as the file)
        try:
            fcntl.flock(f, mode)
        except BlockingIOError:
            f.close()
            return None
        try:
            if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
                return f
        except FileNotFoundError:
            pass
        f.close()


def bundle_lock(base: str, version: str) -> str:
    return os.path.join(base, "locks", version + ".lock")


def next_sequence(base: str) -> int:
    """A device-wide counter, one step per deploy: the order of deploys whatever the clock says."""
    with open(os.path.join(base, "deploy-sequence"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        value = int(text) + 1 if text.isdigit() else 1
        f.seek(0)
        f.truncate()
        f.write(str(value))
        return value


def read_record(directory: str) -> DeployRecord | None:
    """The deploy record of an agent-made bundle directory, or None for anything else."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return None
    try:
        with open(os.path.join(directory, DEPLOY_RECORD)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get("version") == os.path.basename(directory) \
        and isinstance(record.get("sequence"), int) and isinstance(record.get("venvs"), list)
    return record if ok else None


def write_record(bundle: str, version: str, sequence: int | None = None, deployed_utc: str | None = None,
                 venvs: list[str] | None = None) -> None:
    """Create or update bundle/DEPLOY_RECORD (temp file + rename: never half-written) with the fields given."""
    record: DeployRecord = read_record(bundle) or {"version": version, "venvs": []}
    if venvs is not None:
        record["venvs"] = venvs
    if sequence is not None:
        record["sequence"] = sequence
    if deployed_utc is not None:
        record["deployed_utc"] = deployed_utc
    fd, tmp = tempfile.mkstemp(prefix=DEPLOY_RECORD + ".", dir=bundle)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, os.path.join(bundle, DEPLOY_RECORD))


def versions_of(bundles: str, name: str) -> list[DeployRecord]:
    """The agent-made versions of bundle `name` in `bundles`: their deploy records."""
    found = []
    for entry in sorted(os.listdir(bundles)) if os.path.isdir(bundles) else []:
        match = VERSION.match(entry)
        record = read_record(os.path.join(bundles, entry)) if match and match.group("name") == name else None
        if record is not None:
            found.append(record)
    return found


def select_removals(records: list[DeployRecord], current: str, keep: int) -> list[DeployRecord]:
    """Versions to remove: all but the `keep` most recently deployed, the current one always kept."""
    if keep <= 0:
        return []
    others = sorted((r for r in records if r["version"] != current), key=lambda r: r["sequence"], reverse=True)
    return others[keep - 1:]


def tree_bytes(path: str) -> int:
    """Disk space held by a tree (allocated blocks, symlinks not followed)."""
    total = os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512  # what the disk gets back
    return total


def remove_tree(path: str, trash: str) -> tuple[int, str | None]:
    """Rename `path` away (atomic: seen whole or not at all), then delete it: (bytes freed, error)."""
    os.rename(path, trash)
    return delete_tree(trash)


def delete_tree(path: str) -> tuple[int, str | None]:
    """(bytes freed, the first error or None); `onerror`, not 3.12's `onexc`: devices run 3.8+."""
    size = tree_bytes(path)
    errors: list[str] = []
    shutil.rmtree(path, onerror=lambda fn, where, exc: errors.append(f"{where}: {exc[1]}"))
    left = tree_bytes(path) if os.path.exists(path) else 0
    return size - left, (errors[0] if errors else None)


def remove_version(base: str, record: DeployRecord) -> Removal | None:
    """Remove one old version unless a deploy holds it or redeployed it since it was chosen."""
    version = record["version"]
    lock = acquire(bundle_lock(base, version), exclusive=True, wait=False)
    if lock is None:
        return None
    try:
        directory = os.path.join(base, "bundles", version)
        now = read_record(directory)
        if now is None or now["sequence"] != record["sequence"]:
            return None
        freed, error = remove_tree(directory, os.path.join(base, "bundles", REMOVING + version))
        result = os.path.join(base, "results", version + ".json")
        if os.path.isfile(result):
            freed += os.lstat(result).st_blocks * 512
            os.unlink(result)
        unlink(bundle_lock(base, version))
        return {"version": version, "deployed_utc": record.get("deployed_utc"), "bytes": freed, "error": error}
    finally:
        lock.close()


def unused_venvs(base: str) -> tuple[list[str], str | None]:
    """(venv keys no bundle on the device uses, why none can be judged); needs every bundle's record."""
    bundles, used = os.path.join(base, "bundles"), set()
    for entry in sorted(os.listdir(bundles) if os.path.isdir(bundles) else []):
        directory = os.path.join(bundles, entry)
        record = read_record(directory)
        if record is not None:
            used.update(record["venvs"])
        elif os.path.isfile(os.path.join(directory, "manifest.json")) and not entry.startswith(REMOVING):
            return [], "bundles/" + entry + " has no deploy record, so which venv it uses is unknown"
    venvs = os.path.join(base, "venvs")
    names = sorted(os.listdir(venvs)) if os.path.isdir(venvs) else []
    return [v for v in names if VENV.match(v) and v not in used and not os.path.islink(os.path.join(venvs, v))
            and os.path.isfile(os.path.join(venvs, v, ".edgekiln-complete"))], None


def remove_venv(base: str, key: str) -> Removal | None:
    path = os.path.join(base, "venvs", key)
    lock = acquire(path + ".lock", exclusive=True, wait=False)
    if lock is None:
        return None
    try:
        if key not in unused_venvs(base)[0]:  # a deploy recorded it while we waited for nothing
            return None
        freed, error = remove_tree(path, os.path.join(base, "venvs", REMOVING + key))
        unlink(path + ".lock")
        return {"venv": key, "bytes": freed, "error": error}
    finally:
        lock.close()


def prune(base: str, version: str, keep: int) -> PruneReport:
    """After a successful deploy: old versions of this bundle name beyond `keep`, then unused venvs.

    Never fails the deploy: what could not be removed is listed in `errors`."""
    report: PruneReport = {"keep": keep, "name": None, "removed": [], "venvs_removed": [], "leftovers": [],
                           "skipped": [], "bytes_freed": 0, "errors": [], "venvs_note": None}
    match = VERSION.match(version)
    if keep <= 0 or not match:
        return report
    report["name"] = name = match.group("name")
    chosen = select_removals(versions_of(os.path.join(base, "bundles"), name), version, keep)
    run_steps(report, report["removed"], [(r["version"], functools.partial(remove_version, base, r)) for r in chosen])
    try:  # after the versions: their venvs may be unused now
        keys, report["venvs_note"] = unused_venvs(base)
    except OSError as exc:
        keys, report["venvs_note"] = [], "venvs not judged: " + str(exc)
    cut_short = leftovers(base)  # (found before these venvs go)
    run_steps(report, report["venvs_removed"], [(key, functools.partial(remove_venv, base, key)) for key in keys])
    run_steps(report, report["leftovers"],
              [(path, functools.partial(remove_leftover, base, path)) for path in cut_short])
    return report


def run_steps(report: PruneReport, into: list[Removal], steps: list[tuple[str, Callable[[], Removal | None]]]) -> None:
    """Each removal in turn (what it removes, the call that removes it), done ones into `into`; an OSError is
    listed and the next one tried."""
    for what, step in steps:
        try:
            done = step()
        except OSError as exc:
            report["errors"].append(str(exc))
            continue
        if done is None:  # held by a deploy, or deployed again since it was chosen
            report["skipped"].append(what)
            continue
        into.append(done)
        report["bytes_freed"] += done["bytes"]
        if done["error"]:
            report["errors"].append(done["error"])


def leftovers(base: str) -> list[str]:
    """Removals cut short (power lost mid-delete, a file rmtree could not remove): their renamed trees."""
    found = []
    for sub, pattern in (("bundles", VERSION), ("venvs", VENV)):
        parent = os.path.join(base, sub)
        for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
            path = os.path.join(parent, entry)
            if entry.startswith(REMOVING) and pattern.match(entry[len(REMOVING):]) and not os.path.islink(path):
                found.append(path)
    return found


def remove_leftover(base: str, trash: str) -> Removal | None:
    """Finish a removal cut short, under the lock its version or venv had (None when held)."""
    name, parent = os.path.basename(trash)[len(REMOVING):], os.path.dirname(trash)
    in_bundles = os.path.basename(parent) == "bundles"
    lock_path = bundle_lock(base, name) if in_bundles else os.path.join(parent, name + ".lock")
    lock = acquire(lock_path, exclusive=True, wait=False)
    if lock is None:
        return None
    try:
        freed, error = delete_tree(trash)
        if in_bundles or not os.path.exists(os.path.join(parent, name)):
            unlink(lock_path)  # (a venv of that key made since keeps its lock)
        return {"path": trash, "bytes": freed, "error": error}
    finally:
        lock.close()


def unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def claim(base: str, bundle: str, venv: str, version: str) -> None:
    """Mark the bundle as the agent's and name its venv before the venv exists (so --keep keeps it).

    A new version gets its place in the deploy order now (a failed one can be removed later); a
    redeployed one keeps its place until it succeeds."""
    record = read_record(bundle)
    venvs = sorted(set(record["venvs"] if record else []) | {os.path.basename(venv)})
    if record is None:
        write_record(bundle, version, sequence=next_sequence(base), deployed_utc=utc_now(), venvs=venvs)
    else:
        write_record(bundle, version, venvs=venvs)
