"""The atomic bundle writer: everything goes into a temporary sibling directory, then one rename.

A failed build leaves nothing behind; an existing bundle is only replaced with force=True, and
even then the old one is moved aside until the new one is in place.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import runtime

from .errors import BundleError
from .manifest import dumps
from .paths import creatable

MODEL_FILES = {"tflite": "model.tflite", "onnx": "model.onnx"}


@dataclass(frozen=True)
class BundleContents:
    """Everything a bundle holds, already computed."""

    model_bytes: bytes
    model_format: str
    manifest: dict
    golden: dict[str, np.ndarray]
    requirements: list[str]
    readme: str


def check_writable(output: Path, force: bool) -> None:
    """Fail before any work if the output exists and may not be replaced, or cannot be created."""
    if output.exists() and not force:
        raise BundleError(f"output {output} already exists", "pass --force to replace it, or choose another -o")
    if output.exists() and not (output / "manifest.json").is_file():
        raise BundleError(f"output {output} exists and is not a bundle; refusing to replace it",
                          "remove it yourself or choose another -o")
    creatable(output, "output", BundleError)  # e.g. -o some_file/sub, or a read-only folder


def write(output: Path, contents: BundleContents, force: bool = False) -> Path:
    """Write the bundle to `output` atomically and return its path."""
    check_writable(output, force)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as exc:  # the folder changed since the check at the start of the build
        raise BundleError(f"cannot create output {output}: {exc.strerror}", "choose another -o") from None
    try:
        _fill(staging, contents)
        _swap_in(staging, output)
    except OSError as exc:  # disk full, the folder removed under us: nothing is left half-written
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"cannot write the bundle {output}: {exc.strerror or exc}",
                          "check the free space and the folder, then build again") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _fill(directory: Path, contents: BundleContents) -> None:
    (directory / MODEL_FILES[contents.model_format]).write_bytes(contents.model_bytes)
    buffer = io.BytesIO()
    np.savez(buffer, **contents.golden)
    (directory / "golden.npz").write_bytes(buffer.getvalue())
    (directory / "requirements.txt").write_text("\n".join(contents.requirements) + "\n")
    (directory / "README.md").write_text(contents.readme)
    shutil.copytree(Path(runtime.__file__).parent, directory / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (directory / "manifest.json").write_text(dumps(contents.manifest))  # last: its presence marks a bundle
    directory.chmod(0o755)


def _swap_in(staging: Path, output: Path) -> None:
    """Rename staging to output; an old bundle is moved aside first and removed only afterwards."""
    if not output.exists():
        staging.rename(output)
        return
    aside = output.with_name(f".{output.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    output.rename(aside)
    try:
        staging.rename(output)
    except OSError:
        aside.rename(output)
        raise
    shutil.rmtree(aside, ignore_errors=True)
