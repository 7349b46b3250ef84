"""The device side of an upload (agent_upload.py, run as `python3 -c TEXT`): an upload cut short leaves nothing
behind, and the agent's probe removes uploads whose process died (their lock is free), never a live one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

from edgekiln.compiler.deploy import agent, agent_upload

UNPACK = Path(agent_upload.__file__).read_text()


def _upload(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _unpack(incoming: Path, stdin: bytes, *agent_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", UNPACK, str(incoming), "tok", *agent_args], input=stdin,
                          capture_output=True)


def test_a_whole_upload_becomes_the_agent_holding_its_lock(tmp_path):
    # The uploaded "agent" reports whether incoming/tok is still locked (by the process it is: exec kept it).
    probe = (b"import fcntl, os, sys\nfd = os.open(os.path.dirname(os.path.abspath(__file__)), os.O_RDONLY)\n"
             b"try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('free')\n"
             b"except BlockingIOError:\n    print('held', sys.argv[1])\n")
    # (a second open file description of the same directory: its flock conflicts with the inherited one)
    done = _unpack(tmp_path / "incoming", _upload({"agent_run.py": probe, "bundle/model.tflite": b"m" * 5000}), "run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["held", "run"]
    assert (tmp_path / "incoming" / "tok" / "bundle" / "model.tflite").read_bytes() == b"m" * 5000


def test_an_upload_cut_short_is_removed_and_said(tmp_path):
    whole = _upload({"agent_run.py": b"print('never')\n", "bundle/model.tflite": b"m" * 200_000})
    done = _unpack(tmp_path / "incoming", whole[:100_000], "run")  # the stream ends mid-file
    assert done.returncode == 3
    error = json.loads(done.stdout.decode().split("@@edgekiln error ", 1)[1])
    assert error["kind"] == "copy" and error["message"].startswith("the upload broke off (")
    assert list((tmp_path / "incoming").iterdir()) == []


def test_the_probe_removes_dead_uploads_and_keeps_live_ones(tmp_path):
    incoming = tmp_path / "incoming"
    (incoming / "dead" / "bundle").mkdir(parents=True)
    (incoming / "dead" / "bundle" / "model.tflite").write_bytes(b"half")
    (incoming / "live").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
                               str(incoming / "live")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # type: ignore[union-attr]
        agent.clear_broken_uploads(str(tmp_path))
        assert sorted(p.name for p in incoming.iterdir()) == ["live"]
    finally:
        holder.communicate("")
    agent.clear_broken_uploads(str(tmp_path))  # its process ended: its lock with it
    assert list(incoming.iterdir()) == []
