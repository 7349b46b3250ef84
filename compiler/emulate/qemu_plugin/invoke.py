"""Run inside the emulated userland: one model in the bundle runtime, warmed, then N invokes inside the window.

`python invoke.py MODEL N`. The warm-up invoke (it allocates and packs weights) runs before the window opens;
the plugin counts only between the two marks, lseek(-1, MARK, 0) calls that fail with EBADF and do nothing
else (insn_classes.c). Zero inputs, one thread (the plugin's counters are exact for one).
Prints the guest's /proc/self/maps as JSON on stdout: the caller resolves the counted addresses with it.
"""

import contextlib
import json
import os
import sys
from pathlib import Path

from runtime.model import Model  # noqa: TID251  (the runtime as a bundle ships it, on PYTHONPATH)

MARK_START, MARK_END = 0xED6E0001, 0xED6E0002  # insn_classes.c's marks


def mark(value: int) -> None:
    with contextlib.suppress(OSError):  # EBADF, always: the call is only a mark the plugin sees
        os.lseek(-1, value, os.SEEK_SET)


path, invokes = Path(sys.argv[1]), int(sys.argv[2])
model = Model(path.suffix.lstrip("."), path.read_bytes(), 1)
feeds = model.raw_feeds(None)
model.backend.run(feeds)
mark(MARK_START)
for _ in range(invokes):
    model.backend.run(feeds)
mark(MARK_END)
print(json.dumps({"maps": Path("/proc/self/maps").read_text(), "runtime": model.backend.name,
                  "runtime_version": model.backend.version}))
