"""Run a bundle's own `python -m runtime validate` in an emulated Raspberry Pi OS userland.

userland.py builds (once, cached) the device's Python from Debian .debs and installs the
bundle's requirements.txt as the device's wheels; run.py runs it under qemu-user with the
board's core. Emulation checks correctness only: its timings are not device latency.
witness.py counts the instructions one warm invoke executes there (a TCG plugin, qemu_plugin/), and
cycles.py turns counts into the target's milliseconds and says whether that figure may rank candidates.
"""

from __future__ import annotations

from edgekiln.compiler.emulate.run import EmulatedRun, validate_emulated

__all__ = ["EmulatedRun", "validate_emulated"]
