"""One device: probe it, upload what it lacks, let the agent install, validate and bench, fetch the result.

Two ssh connections per device: `probe` (the agent's text on stdin: facts, is this bundle version
already there, is a venv for these requirements ready) and `run` (a tar on stdin with the agent, the
bundle unless present, the wheels unless the venv is ready, unpacked by agent_upload.py which then becomes
the agent).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekiln.compiler.deploy import transport
from edgekiln.compiler.deploy.agent_messages import AgentResult, Probe
from edgekiln.compiler.deploy.measurement_json import Measurement
from edgekiln.compiler.deploy.transport import Destination, DeviceFailure, SshOptions
from edgekiln.compiler.errors import DeployError

AGENT = Path(__file__).with_name("agent.py")
AGENT_RUN = AGENT.with_name("agent_run.py")  # the agent's `run` and `race` (imports agent.py; not sent for `probe`)
AGENT_KEEP = AGENT.with_name("agent_keep.py")  # imported by the agent's `run` (not by `probe`)
UNPACK = AGENT.with_name("agent_upload.py")  # unpacks the upload, then becomes the agent (python3 -c TEXT)
MARK = "@@edgekiln "
SKIP = {"measurements", "__pycache__", "report.html"}  # host-side records, views and caches never travel
NO_PYTHON = 127  # the remote shell's "command not found"
# A venv with numpy 2.4.6 + ai-edge-litert 2.3.0 took 163 MB, installed from 38 MB of wheels (x86_64 cp311).
INDEX_INSTALL_MB = 200  # disk a venv needs when pip fetches its wheels from the index
VENV_PER_WHEEL_MB = 4.5  # and per MB of shipped wheels


@dataclass(frozen=True)
class DeployOptions:
    """Everything about a deploy except which devices."""

    ssh: SshOptions = field(default_factory=SshOptions)
    remote_dir: str = "edgekiln"  # relative paths are under the login user's home
    python: str = "python3"
    wheels: Path | None = None
    runs: int = 50
    warmup: int = 5
    threads: int | None = None
    timeout: float = 1800
    keep: int = 3  # versions of this bundle kept on a device after a successful deploy; 0: all
    profile: bool = False  # also the per-op profile on the device (python -m runtime profile)

    def __post_init__(self) -> None:
        # `~/x` would reach the remote shell quoted (no tilde expansion): say it as a home-relative path.
        if self.remote_dir.startswith("~/"):
            object.__setattr__(self, "remote_dir", self.remote_dir[2:] or ".")
        if self.runs < 1 or self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise DeployError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
        if self.keep < 0:
            raise DeployError(f"--keep must be >= 0, got {self.keep}", "--keep 0 keeps every version")
        self._check_limits_and_files()

    def _check_limits_and_files(self) -> None:
        """The rest of the options, before any device is contacted (a fleet deploy takes minutes)."""
        if not self.timeout > 0 or self.timeout == float("inf"):  # NaN fails the comparison
            raise DeployError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.ssh.connect_timeout < 1:
            raise DeployError(f"--connect-timeout must be at least 1 second, got {self.ssh.connect_timeout}")
        if not self.python.strip() or not self.remote_dir.strip():
            raise DeployError("--python and --remote-dir must not be empty")
        for flag, path in (("--identity", self.ssh.identity), ("--ssh-config", self.ssh.config)):
            if path is not None and not Path(path).is_file():
                raise DeployError(f"{flag} {path} is not a file", "name an existing file")
        if self.wheels is not None and not (Path(self.wheels).is_dir() and any(Path(self.wheels).glob("*.whl"))):
            raise DeployError(f"--wheels {self.wheels} is not a folder of .whl files",
                              "fill a folder with pip download -r requirements.txt")


@dataclass
class DeviceResult:
    """What happened on one device: the fetched agent result, or the failure."""

    destination: Destination
    probe: Probe | None = None
    result: AgentResult | None = None
    failure: DeviceFailure | None = None
    timings_s: dict = field(default_factory=dict)
    record: Measurement | None = None  # what was written to measurements/, if anything
    earlier: bool = False  # not deployed: `record`, from an earlier run, already answers (records.measured_before)

    @property
    def ok(self) -> bool:
        return self.failure is None and (self.result is not None or self.earlier)


class PreparedBundle:
    """A bundle read once on the host, with its content version and (lazily) its upload tars."""

    def __init__(self, path: Path, wheels: Path | None) -> None:
        if not (path / "manifest.json").is_file():
            raise DeployError(f"{path} is not a bundle (no manifest.json)",
                              "pass the directory `edgekiln build` wrote")
        if not (path / "requirements.txt").is_file():
            raise DeployError(f"{path} has no requirements.txt", "rebuild the bundle with `edgekiln build`")
        if wheels is not None and not any(wheels.glob("*.whl")):
            raise DeployError(f"--wheels {wheels} holds no .whl files",
                              "fill it with pip download -r requirements.txt")
        self.path, self.wheels = path, wheels
        try:
            self.manifest = json.loads((path / "manifest.json").read_text())
            self.manifest["model"]["sha256"]  # noqa: B018  (the one key every record needs)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DeployError(f"{path}/manifest.json is not an edgekiln manifest ({type(exc).__name__}: "
                              f"{exc})", "rebuild the bundle with `edgekiln build`") from None
        self.files = sorted(p for p in path.rglob("*")
                            if p.is_file() and not SKIP & set(p.relative_to(path).parts))
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f"{f.relative_to(path)}\0{f.stat().st_size}\0".encode())
            digest.update(f.read_bytes())
        self.version = f"{path.resolve().name}-{digest.hexdigest()[:12]}"
        self.req_hash = hashlib.sha256((path / "requirements.txt").read_bytes()).hexdigest()
        self._tars: dict[tuple[bool, bool], Path] = {}
        self._lock = threading.Lock()
        self._work = tempfile.TemporaryDirectory(prefix="edgekiln-deploy-")

    def tar(self, with_bundle: bool, with_wheels: bool) -> Path:
        """The upload for a device: the agent, bundle/ unless present, wheels/ unless the venv is ready."""
        key = (with_bundle, with_wheels and self.wheels is not None)
        with self._lock:
            if key not in self._tars:
                out = Path(self._work.name) / f"upload-{int(key[0])}{int(key[1])}.tar"
                with tarfile.open(out, "w") as tar:
                    tar.add(AGENT, "agent.py")
                    tar.add(AGENT_RUN, "agent_run.py")
                    tar.add(AGENT_KEEP, "agent_keep.py")
                    for f in self.files if key[0] else []:
                        tar.add(f, f"bundle/{f.relative_to(self.path).as_posix()}")
                    for w in sorted(self.wheels.glob("*.whl")) if key[1] else []:  # type: ignore[union-attr]
                        tar.add(w, f"wheels/{w.name}")
                self._tars[key] = out
            return self._tars[key]

    def close(self) -> None:
        self._work.cleanup()


def deploy(bundle: PreparedBundle, dest: Destination, options: DeployOptions,
           stage: Callable[[str], None] = lambda name: None, verb: str = "run") -> DeviceResult:
    """Deploy to one device; every failure is caught into the result (a fleet never stops for one).
    verb "race": the upload is a build's candidates, timed side by side (deploy/race.py)."""
    outcome = DeviceResult(dest)
    start = time.perf_counter()
    try:
        stage("connecting")
        outcome.probe = _probe(bundle, dest, options)
        outcome.timings_s["probe"] = round(time.perf_counter() - start, 2)
        outcome.result = _run(bundle, dest, options, outcome, stage, verb)
    except DeviceFailure as exc:
        outcome.failure = exc
    outcome.timings_s["total"] = round(time.perf_counter() - start, 2)
    return outcome


def _agent_args(bundle: PreparedBundle, options: DeployOptions) -> str:
    return " ".join(shlex.quote(a) for a in ("--base", options.remote_dir, "--bundle", bundle.version,
                                             "--req-hash", bundle.req_hash))


def _probe(bundle: PreparedBundle, dest: Destination, options: DeployOptions) -> Probe:
    command = f"{shlex.quote(options.python)} - probe {_agent_args(bundle, options)}"
    done = transport.run(dest, options.ssh, command, stdin=AGENT.read_bytes(), timeout=120)
    return _answer(done, "probe")


def _run(bundle: PreparedBundle, dest: Destination, options: DeployOptions, outcome: DeviceResult,
         stage: Callable[[str], None], verb: str = "run") -> AgentResult:
    probe = outcome.probe
    assert probe is not None, "a device is probed before the run"
    upload = bundle.tar(not probe["bundle_present"], not probe["venv_ready"])
    _check_space(probe, upload, options, bundle)
    token = uuid.uuid4().hex[:12]
    extra = [f"--incoming={token}", f"--runs={options.runs}",
             f"--warmup={options.warmup}", f"--keep={options.keep}"]
    if options.threads:
        extra.append(f"--threads={options.threads}")
    if options.profile:
        extra.append("--profile")
    q = shlex.quote
    incoming = f"{options.remote_dir.rstrip('/')}/incoming"
    command = (f"{q(options.python)} -c {q(UNPACK.read_text())} {q(incoming)} {token} "
               f"{verb} {_agent_args(bundle, options)} {' '.join(extra)}")
    started = time.perf_counter()
    stage("copying")

    def on_line(line: str) -> None:
        if line.startswith(MARK + "stage "):
            name = json.loads(line.split(" ", 2)[2])
            if name == "copied":
                outcome.timings_s["copy"] = round(time.perf_counter() - started, 2)
            else:
                stage(name)

    with upload.open("rb") as stdin:
        done = transport.run(dest, options.ssh, command, stdin=stdin, timeout=options.timeout,
                             on_line=on_line)
    return _answer(done, "result")


def _check_space(probe: Probe, upload: Path, options: DeployOptions, bundle: PreparedBundle) -> None:
    """Refuse early when the device's disk cannot hold the upload and the venv it will become."""
    needed = upload.stat().st_size / 2**20  # the upload unpacked (wheels included)
    if not probe["venv_ready"] and options.wheels is None:
        needed += INDEX_INSTALL_MB
    elif not probe["venv_ready"]:
        assert bundle.wheels is not None, "--wheels was given: the prepared bundle carries them"
        wheels_mb = sum(w.stat().st_size for w in bundle.wheels.glob("*.whl")) / 2**20
        needed += VENV_PER_WHEEL_MB * wheels_mb
    free = probe["facts"]["free_mb"]
    if free < needed:
        raise DeviceFailure("disk_full", f"disk full: {free} MB free under {probe['base']}, about "
                            f"{needed:.0f} MB needed",
                            "free space on the device or pass --remote-dir elsewhere")


def _answer(done: transport.Completed, kind: str) -> Any:
    """The agent's `probe`/`result` line as parsed (a Probe, an AgentResult), or its error, or the shell's
    failure, as one DeviceFailure."""
    for line in done.stdout.splitlines():
        if line.startswith(MARK + kind + " "):
            return json.loads(line.split(" ", 2)[2])
        if line.startswith(MARK + "error "):
            error = json.loads(line.split(" ", 2)[2])
            detail = {"validation": error["validation"]} if "validation" in error else {}
            raise DeviceFailure(error["kind"], error["message"], error.get("hint", ""), detail)
    if done.returncode == NO_PYTHON:
        raise DeviceFailure("no_python", f"no Python 3 on the device ({_last_line(done.stderr)})",
                            "install python3 (and python3-venv), or pass --python PATH")
    raise DeviceFailure("device", f"the device command failed (exit {done.returncode}): "
                        f"{_last_line(done.stderr)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"
