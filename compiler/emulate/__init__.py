"""Run a bundle's own `python -m runtime validate` in an emulated Raspberry Pi OS userland.

userland.py builds (once, cached) the device's Python from Debian .debs and installs the
bundle's requirements.txt as the device's wheels; run.py runs it under qemu-user with the
board's core. Emulation checks correctness only: its timings are not device latency.
"""

from __future__ import annotations

from edgekiln.compiler.emulate.run import EmulatedRun, validate_emulated

__all__ = ["EmulatedRun", "validate_emulated"]
