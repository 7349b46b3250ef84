"""The emulated device's userland: Debian's own python3.X .debs unpacked, the bundle's wheels beside it.

No debootstrap, no chroot, no root: apt downloads the arm64 (or armhf) packages into a private
apt state (`-o APT::Architecture=...`), `dpkg-deb -x` unpacks them, and pip downloads exactly
the wheels the device's `pip install -r requirements.txt` would pick for its arch, Python and
glibc. Both are built once into the user's cache directory and reused; a build happens in a
temporary sibling directory and is renamed into place, so an interrupted one leaves nothing.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekiln.compiler import Progress
from edgekiln.compiler.emulate.platforms import DEBIAN_SUITES, Platform
from edgekiln.compiler.errors import EmulationError
from edgekiln.targets import Target

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# libstdc++6: the interpreter wheels are C++ and manylinux wheels expect the OS to provide it.
BASE_PACKAGES = ("libstdc++6",)


@dataclass(frozen=True)
class Userland:
    """An unpacked Debian root and what is in it."""

    root: Path
    python: str                # the interpreter's path inside the root, e.g. /usr/bin/python3.11
    debs: dict[str, str]       # package -> version, for the report
    suite: str
    notes: tuple[str, ...] = ()  # what differs from the device's own install (an index apt could not get)


def cache_dir() -> Path:
    """~/.cache/edgekiln/emulate, or under $XDG_CACHE_HOME when it is set."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgekiln" / "emulate"


def debian_userland(platform: Platform, target: Target, progress: Progress) -> Userland:
    """The cached userland for the target's Debian release, arch and apt packages; built on first use."""
    suite = DEBIAN_SUITES[target.python]
    packages = sorted({f"python{target.python}", *BASE_PACKAGES, *target.apt_packages})
    key = f"{suite}-{platform.debian_arch}-" + hashlib.sha256(" ".join(packages).encode()).hexdigest()[:10]
    final = cache_dir() / "userland" / key
    if not (final / "debs.json").is_file():
        progress(f"Building the {suite} {platform.debian_arch} userland (once; cached in {final.parent})")
        build_atomically(final, lambda work: _unpack_debs(work, platform, suite, packages, target.python))
    facts = json.loads((final / "debs.json").read_text())
    return Userland(final / "root", f"/usr/bin/python{target.python}", facts["debs"], suite,
                    tuple(facts["notes"]))


def build_atomically(final: Path, build: Callable[[Path], None]) -> None:
    """Run `build` in a temporary sibling of `final`, then rename it into place.

    The caller found `final` lacking its completion marker: a folder left there by hand (the
    marker is written before the rename) is discarded first.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        shutil.rmtree(final)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(work)
        try:
            work.rename(final)
        except OSError:  # another process finished the same build first: keep theirs
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack_debs(work: Path, platform: Platform, suite: str, packages: list[str], python: str) -> None:
    for tool, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise EmulationError(f"{tool} not found: building the emulated userland needs a Debian/Ubuntu host",
                                 f"install the {package} package")
    if not KEYRING.is_file():
        raise EmulationError(f"{KEYRING} not found (needed to verify Debian's packages)",
                             "install the Debian package debian-archive-keyring")
    options = _apt_state(work / "apt", platform, suite)
    notes = _apt(options + ["update"], "download the Debian package lists", tolerate_updates=True)
    _apt(options + ["install", "--download-only", "--no-install-recommends", "-y", *packages],
         f"download {' '.join(packages)} ({platform.debian_arch})")
    root = work / "root"
    debs = {}
    for deb in sorted((work / "apt" / "archives").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        name, version = deb.stem.split("_")[:2]
        debs[name] = version.replace("%3a", ":")
    _alternatives(root)
    precompile(root / "usr" / "lib" / f"python{python}", python)
    shutil.rmtree(work / "apt")  # lists and .debs: 35 MB the runs never read
    (work / "debs.json").write_text(json.dumps({"debs": debs, "notes": notes}, indent=1, sort_keys=True))


def _apt_state(state: Path, platform: Platform, suite: str) -> list[str]:
    """apt-get options for a private state: its own sources, lists, cache and (empty) dpkg status."""
    for sub in ("lists/partial", "archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    mirror = os.environ.get("EDGEKILN_DEBIAN_MIRROR", "http://deb.debian.org")
    options = f"[arch={platform.debian_arch} signed-by={KEYRING}]"
    (state / "etc" / "sources.list").write_text(
        f"deb {options} {mirror}/debian {suite} main\n"
        f"deb {options} {mirror}/debian {suite}-updates main\n"
        f"deb {options} {mirror}/debian-security {suite}-security main\n")
    settings = {"APT::Architecture": platform.debian_arch, "APT::Architectures": platform.debian_arch,
                "Dir::State": state, "Dir::State::Lists": state / "lists", "Dir::State::status": state / "status",
                "Dir::Cache": state, "Dir::Cache::Archives": state / "archives",
                "Dir::Etc::SourceList": state / "etc" / "sources.list",
                "Dir::Etc::SourceParts": state / "etc" / "sources.list.d",
                "Dir::Etc::Preferences": state / "etc" / "preferences",
                "Dir::Etc::PreferencesParts": state / "etc" / "preferences.d",
                "Debug::NoLocking": "1", "APT::Get::List-Cleanup": "0"}
    if os.geteuid() == 0:  # as root apt would drop to user _apt, who cannot write into our cache
        settings["APT::Sandbox::User"] = "root"
    return ["apt-get", "-qq"] + [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def _apt(command: list[str], what: str, tolerate_updates: bool = False) -> list[str]:
    """Run apt-get; an error is an EmulationError. Returns notes on what was tolerated.

    tolerate_updates: a stale -updates or -security index (a mirror mid-sync: 'File has unexpected
    size') leaves the release's own packages usable; go on without that suite and say so.
    """
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    output = (result.stdout + result.stderr).splitlines()
    failed = [line for line in output if line.startswith(("E: Failed to fetch", "W: Failed to fetch"))]
    suites_ok = tolerate_updates and failed and all(re.search(r"-(updates|security)/", f) for f in failed)
    if suites_ok:
        return [f"apt skipped a suite it could not fetch ({f.split()[4]}): the device may have newer packages"
                for f in failed]
    if result.returncode != 0 or failed:
        problems = failed or [line for line in output if line.startswith("E:")]
        detail = problems[0] if problems else (output or ["no output"])[-1]
        raise EmulationError(f"apt-get could not {what}: {detail}",
                             "building the emulated userland needs network access to deb.debian.org on first use "
                             "(or set EDGEKILN_DEBIAN_MIRROR)")
    return []


def _alternatives(root: Path) -> None:
    """What update-alternatives would do in postinst (dpkg-deb -x runs none): BLAS / LAPACK links.

    libblas3 and liblapack3 ship .../<triplet>/blas/libblas.so.3 and register the link one level up,
    where numpy's libraries look for them.
    """
    for library in [*root.glob("usr/lib/*/blas/libblas.so.3"), *root.glob("usr/lib/*/lapack/liblapack.so.3")]:
        link = library.parent.parent / library.name
        if not link.exists():
            link.symlink_to(Path(library.parent.name) / library.name)


def precompile(directory: Path, python: str) -> None:
    """Byte-compile with the host's Python when it is the device's version: emulated compiling is slow.

    Debian's .debs ship no .pyc (postinst makes them), and runs do not write any (the bundle is
    the user's). Another host version would write files the device's Python ignores: skip then.
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python:
        compileall.compile_dir(str(directory), quiet=2, workers=0)
