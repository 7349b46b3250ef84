"""Run inside the emulated userland: one model in the bundle runtime, warmed, then N more invokes.

`python invoke.py MODEL N`. The warm-up invoke (it allocates and packs weights) runs in every run, so
N = 1 minus N = 0 is one warm invoke. Zero inputs, one thread (the plugin's counters are exact for one).
Prints the guest's /proc/self/maps as JSON on stdout: the caller resolves the counted addresses with it.
"""

import json
import sys
from pathlib import Path

from runtime.model import Model  # noqa: TID251  (the runtime as a bundle ships it, on PYTHONPATH)

path, invokes = Path(sys.argv[1]), int(sys.argv[2])
model = Model(path.suffix.lstrip("."), path.read_bytes(), 1)
feeds = model.raw_feeds(None)
model.backend.run(feeds)
for _ in range(invokes):
    model.backend.run(feeds)
print(json.dumps({"maps": Path("/proc/self/maps").read_text(), "runtime": model.backend.name,
                  "runtime_version": model.backend.version}))
