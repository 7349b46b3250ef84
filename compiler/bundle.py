"""The atomic bundle writer: everything goes into a temporary sibling directory, then one rename.

A failed build leaves nothing behind; an existing bundle is only replaced with force=True, and then the two
folders are exchanged in one step (renameat2 RENAME_EXCHANGE) where the filesystem can, else the old one is
moved aside until the new one is in place. The caller holds the output's lock (output_lock.py), which also
undoes what a killed build left.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgekiln import runtime
from edgekiln.compiler import report
from edgekiln.compiler.device import compat
from edgekiln.compiler.errors import OutputError
from edgekiln.compiler.manifest import MODEL_FILES, dumps
from edgekiln.compiler.manifest_schema import Manifest, TensorEntry
from edgekiln.compiler.output_lock import aside, staging_prefix
from edgekiln.compiler.paths import creatable
from edgekiln.compiler.text_bundle import TOKENIZERS_PIN

if TYPE_CHECKING:
    from edgekiln.compiler.measure import Measured
    from edgekiln.compiler.search.select import Selection
    from edgekiln.targets import Target


@dataclass(frozen=True)
class BundleContents:
    """Everything a bundle holds, already computed."""

    model_bytes: bytes
    model_format: str
    manifest: Manifest
    golden: dict[str, np.ndarray]
    requirements: list[str]
    readme: str
    files: dict[str, bytes] = field(default_factory=dict)  # more files by name: a text bundle's tokenizer.json


def check_writable(output: Path, force: bool) -> None:
    """Fail before any work if the output exists and may not be replaced, or cannot be created."""
    if output.exists() and not force:
        raise OutputError(f"output {output} already exists", "pass --force to replace it, or choose another -o")
    if output.exists() and not (output / "manifest.json").is_file():
        raise OutputError(f"output {output} exists and is not a bundle; refusing to replace it",
                          "remove it yourself or choose another -o")
    creatable(output, "output", OutputError)  # e.g. -o some_file/sub, or a read-only folder


def write(output: Path, contents: BundleContents, force: bool = False) -> Path:
    """Write the bundle to `output` atomically and return its path."""
    if not output.parent.is_dir():  # made when the build took the output's lock
        raise OutputError(f"the folder {output.parent} was removed during the build; nothing was written",
                          "build again")
    check_writable(output, force)
    try:
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(output), dir=output.parent))
    except OSError as exc:  # the folder changed since the check at the start of the build
        raise OutputError(f"cannot create output {output}: {exc.strerror}", "choose another -o") from None
    try:
        _fill(staging, contents)
        _swap_in(staging, output)
    except OSError as exc:  # disk full, the folder removed under us: nothing is left half-written
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write the bundle {output}: {exc.strerror or exc}",
                          "check the free space and the folder, then build again") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _fill(directory: Path, contents: BundleContents) -> None:
    (directory / MODEL_FILES[contents.model_format]).write_bytes(contents.model_bytes)
    for name, data in contents.files.items():
        (directory / name).write_bytes(data)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **_golden(directory, contents))
    (directory / "golden.npz").write_bytes(buffer.getvalue())
    (directory / "requirements.txt").write_text("\n".join(contents.requirements) + "\n")
    (directory / "README.md").write_text(contents.readme)
    shutil.copytree(Path(runtime.__file__).parent, directory / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (directory / "manifest.json").write_text(dumps(contents.manifest))  # its presence marks a bundle
    report.write(directory)  # a view of the manifest just written, as `edgekiln report` would remake it
    directory.chmod(0o755)


def _golden(directory: Path, contents: BundleContents) -> dict[str, np.ndarray]:
    """golden.npz. A bundle that takes text is checked from text (runtime BundleModel.validate): its golden
    sentences' token arrays and their embeddings, both made by the bundle's own runtime from the files just written
    (tokenizer, model) as `python -m runtime embed` makes them on the device. Not the per-token states: 384 floats
    per sentence instead of seq_len x 384 (MiniLM-L3 at --seq-len 32: 0.41 of its 8.2 MB), and what a user runs."""
    text = contents.manifest.get("text")
    if not text:
        return contents.golden
    model = runtime.BundleModel(directory, cast(dict[str, Any], contents.manifest), contents.model_bytes, threads=1)
    sentences = list(text["golden_sentences"])
    feeds, _ = model.text_encoder().feeds(sentences, [info.name for info in model.inputs])
    return {**{f"input_{k}": f for k, f in enumerate(feeds)}, "text_embedding": model.embed(sentences)}


def _swap_in(staging: Path, output: Path) -> None:
    """Put staging at output; an old bundle ends up at staging's name and is removed only afterwards.
    Ctrl-C and SIGTERM wait until the renames are done (SIGKILL cannot: output_lock.recover undoes that)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        if not output.exists():
            staging.rename(output)
            return
        if not _exchange(staging, output):
            _move_aside_and_rename(staging, output)
        shutil.rmtree(staging, ignore_errors=True)  # the old bundle
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _exchange(staging: Path, output: Path) -> bool:
    """Swap the two folders atomically (Linux renameat2); False where the system or filesystem cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if renameat2(at_cwd, os.fsencode(staging), at_cwd, os.fsencode(output), exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not on this filesystem
        return False
    raise OSError(error, os.strerror(error), str(output))


def _move_aside_and_rename(staging: Path, output: Path) -> None:
    old = aside(output)
    shutil.rmtree(old, ignore_errors=True)
    output.rename(old)
    try:
        staging.rename(output)
    except OSError:
        old.rename(output)
        raise
    old.rename(staging)  # removed with staging's name, as after an exchange


def contents(selection: Selection, manifest: Manifest, measured: Measured, target: Target,
             files: dict[str, bytes] | None = None) -> BundleContents:
    """What the bundle of a build holds: the shipped model, its manifest, golden vectors, device files; a bundle
    that takes text also its tokenizer, and the `tokenizers` package in its requirements."""
    requirements = compat.requirements(target, selection.format)
    if "text" in manifest:
        requirements.append(TOKENIZERS_PIN)
    return BundleContents(selection.model, selection.format, manifest, measured.golden, requirements,
                          device_readme(manifest, target), dict(files or {}))


def _venv_lines(target: Target) -> str:
    """Create the venv; a target whose numpy comes from apt needs the system's site-packages in it."""
    if not target.apt_packages:
        return "python3 -m venv .venv && . .venv/bin/activate"
    return (f"sudo apt install {' '.join(target.apt_packages)}   # PyPI has no {target.arch} wheel of these\n"
            "python3 -m venv --system-site-packages .venv && . .venv/bin/activate")


def device_readme(manifest: Manifest, target: Target) -> str:
    """The README that travels with the bundle: install and run on the device."""
    model, size = manifest["model"], manifest["size"]
    return f"""# {manifest['source']['file_name']} for {target.description}

Compiled by edgekiln {manifest['compiler']['version']} on {manifest['created_utc']}:
`{model['file']}` ({model['bytes']:,} bytes, {size['ratio']:.2f}x the float32 baseline),
quantization: {(manifest['quantization'] or {}).get('mode', 'none')}.

## On the device ({target.os}, Python {target.python})

```
{_venv_lines(target)}
pip install -r requirements.txt
python -m runtime validate   # checks the model's sha256 and the golden outputs; exit 0 = all match
python -m runtime bench      # init, first inference, p50/p90/p99 latency, peak memory
```

## In Python

```
from edgekiln import runtime
model = runtime.load(".")          # refuses a model whose sha256 differs from manifest.json
y = model.predict(x)               # float32 in and out; batch > 1 runs sample by sample
```

Inputs: {', '.join(_tensor_text(i) for i in model['inputs'])}.
Outputs: {', '.join(_tensor_text(o) for o in model['outputs'])}.
`manifest.json` records how this bundle was built and what was measured, and where
(latency.host is measured on the build machine, not on this device).
"""


def _tensor_text(t: TensorEntry) -> str:
    """name, shape, dtype; with the shape predict() takes when the converter changed the layout."""
    if "layout" in t:
        lay = t["layout"]
        return (f"{t['name']} {lay['source_shape']} {lay['source']} for predict() "
                f"(compiled {t['shape']} {lay['compiled']} {t['dtype']})")
    return f"{t['name']} {t['shape']} {t['dtype']}"
