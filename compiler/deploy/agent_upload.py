"""The device side of an upload: unpack the tar on stdin into incoming/TOKEN, then become the agent.

Sent as `python3 -c TEXT INCOMING TOKEN agent-args...` (stdlib only, Python >= 3.8, like agent.py). Why not
`tar -xf -`: an upload cut short (the connection dropped, the disk filled) must not stay on the device. So
this process removes what it unpacked when the stream breaks, and it holds a lock on incoming/TOKEN from
before the first byte until the agent it becomes (exec, same process, same lock) exits; the agent removes
every incoming/* whose lock nobody holds, which catches uploads whose process was killed outright.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import tarfile


def main() -> None:
    incoming, token = sys.argv[1], sys.argv[2]
    where = os.path.join(incoming, token)
    locks = os.path.join(os.path.dirname(incoming), "locks")
    os.makedirs(incoming, exist_ok=True)
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, "incoming.lock"), "a") as guard:  # no cleaner looks between mkdir and flock
        fcntl.flock(guard, fcntl.LOCK_EX)
        os.mkdir(where)
        held = os.open(where, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
            tar.extraction_filter = getattr(tarfile, "data_filter", None)
            tar.extractall(where)
    except (OSError, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(where, ignore_errors=True)
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        report("disk_full" if full else "copy",
               "disk full: no space left on the device while copying the bundle" if full else
               f"the upload broke off ({type(exc).__name__}: {exc})",
               "free space on the device or pass --remote-dir elsewhere" if full else "deploy again")
        sys.exit(3)
    os.set_inheritable(held, True)  # the agent holds incoming/TOKEN's lock until it exits
    agent = os.path.join(where, "agent_run.py")  # `run` or `race` (agent.py, beside it, is imported by it)
    os.execv(sys.executable, [sys.executable, agent] + sys.argv[3:])


def report(kind: str, message: str, hint: str) -> None:
    with contextlib.suppress(OSError):  # nobody may be listening any more (the connection dropped)
        print("@@edgekiln error " + json.dumps({"kind": kind, "message": message, "hint": hint}), flush=True)


if __name__ == "__main__":
    main()
