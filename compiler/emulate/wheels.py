"""The bundle's requirements.txt, installed as the device would: its arch's wheels, or the OS's packages.

pip downloads wheels for another machine only when told every platform tag the machine accepts
(`--platform manylinux_2_X_aarch64 ...`, matched literally) plus its Python version. A pin the
target's apt packages already satisfy (numpy from python3-numpy on 32-bit Raspberry Pi OS) is
checked against the unpacked package instead: pip on the device, in a venv with
--system-site-packages, would keep it too.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgekiln.compiler.emulate.platforms import Platform
from edgekiln.compiler.emulate.userland import Progress, Userland, build_atomically, cache_dir, precompile
from edgekiln.compiler.errors import EmulationError
from edgekiln.targets import Target

_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*([^#;]*?)\s*(?:[#;].*)?$")


@dataclass(frozen=True)
class Site:
    """Where the installed wheels are (for PYTHONPATH) and what was installed from where."""

    path: Path
    wheels: tuple[str, ...]     # name==version, from PyPI wheels
    from_apt: tuple[str, ...]   # name==version, from the OS packages


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blanks dropped)."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def install(requirements: list[str], platform: Platform, target: Target, userland: Userland,
            progress: Progress) -> Site:
    """The cached site folder holding `requirements` for this platform; downloaded on first use."""
    from_apt, to_download = _split_apt_provided(requirements, userland, target)
    # With some pins left to apt, pip must not resolve dependencies: it would look for them on PyPI.
    no_deps = bool(from_apt)
    tags = platform.wheel_platforms(target.glibc)
    key = hashlib.sha256(json.dumps([tags, target.python, sorted(to_download), no_deps]).encode()).hexdigest()[:16]
    final = cache_dir() / "site" / key
    if not (final / "installed.json").is_file():
        progress(f"Downloading the {platform.wheel_arch} wheels of requirements.txt (once; cached)")
        build_atomically(final, lambda work: _download_and_unpack(work, to_download, tags, target, no_deps))
    wheels = json.loads((final / "installed.json").read_text())
    return Site(final / "site", tuple(wheels), tuple(from_apt))


def _split_apt_provided(requirements: list[str], userland: Userland, target: Target) -> tuple[list[str], list[str]]:
    """(pins the OS packages satisfy, pins pip must fetch); a pin the OS contradicts is an error."""
    from packaging.specifiers import SpecifierSet

    provided = _os_distributions(userland.root, target.python)
    from_apt, to_download = [], []
    for line in requirements:
        match = _LINE.match(line)
        name = _normalize(match.group(1)) if match else ""
        if match is None or name not in provided:
            to_download.append(line)
            continue
        version = provided[name]
        if not SpecifierSet(match.group(2)).contains(version, prereleases=True):
            raise EmulationError(f"requirements.txt pins {line} but the target's OS package provides "
                                 f"{name} {version}", "rebuild the bundle for this target")
        from_apt.append(f"{name}=={version}")
    return from_apt, to_download


def _os_distributions(root: Path, python: str) -> dict[str, str]:
    """name -> version of the Python distributions Debian's packages put in dist-packages."""
    found = {}
    for folder in (root / "usr/lib/python3/dist-packages", root / f"usr/lib/python{python}/dist-packages"):
        for meta in [*folder.glob("*.egg-info"), *folder.glob("*.dist-info")]:
            name, _, version = meta.name.rsplit(".", 1)[0].partition("-")
            if version:
                found[_normalize(name)] = version.split("-")[0]
    return found


def _download_and_unpack(work: Path, requirements: list[str], tags: list[str], target: Target,
                         no_deps: bool) -> None:
    downloads = work / "downloads"
    if requirements:
        _pip_download(requirements, downloads, tags, target, no_deps)
    site = work / "site"
    site.mkdir()
    wheels = sorted(downloads.glob("*.whl")) if downloads.is_dir() else []
    for wheel in wheels:
        _unpack_wheel(wheel, site)
    precompile(site, target.python)
    installed = [f"{_normalize(w.name.split('-')[0])}=={w.name.split('-')[1]}" for w in wheels]
    (work / "installed.json").write_text(json.dumps(installed, indent=1))
    for wheel in wheels:
        wheel.unlink()


def _pip_download(requirements: list[str], dest: Path, tags: list[str], target: Target, no_deps: bool) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(requirements) + "\n")
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-qq",
               "--only-binary=:all:", "--python-version", target.python, "--implementation", "cp",
               *[arg for tag in tags for arg in ("--platform", tag)], *(["--no-deps"] if no_deps else []),
               "-d", str(dest), "-r", handle.name]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    finally:
        Path(handle.name).unlink()
    if result.returncode != 0:
        raise _pip_error(result.stderr, tags[0].split("_", 3)[-1], target)


def _pip_error(stderr: str, arch: str, target: Target) -> EmulationError:
    missing = re.search(r"No matching distribution found for (\S+)", stderr)
    if missing:
        return EmulationError(f"PyPI has no {arch} wheel of {missing.group(1)} for Python {target.python} / "
                              f"glibc {target.glibc} (target {target.name})",
                              "the device could not install it either: rebuild for another --target or format")
    last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "no output")
    return EmulationError(f"pip could not download the bundle's wheels: {last.strip()}",
                          "emulation needs network access to PyPI on first use of a requirements set")


def _unpack_wheel(wheel: Path, site: Path) -> None:
    """A wheel is a zip of the site-packages tree; its .data/purelib|platlib parts belong there too."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data files: not needed to import
                parts = parts[2:]
            target = site.joinpath(*parts)
            if not target.resolve().is_relative_to(site.resolve()):
                raise EmulationError(f"wheel {wheel.name} has a member outside its tree: {member.filename}")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
