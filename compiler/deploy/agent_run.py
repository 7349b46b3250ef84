"""The device side of `edgekiln deploy run` and `build --device`'s race: place the bundle, make or reuse its
venv, validate, bench (`run`); time a build's candidates side by side (`race`).

Sent in the upload tar beside agent.py (probe and what every command shares, imported from there) and
agent_keep.py; agent_upload.py unpacks the tar and becomes this script. Stdlib only, Python >= 3.8, like
agent.py.

    python3 agent_run.py run --base DIR --bundle VERSION --req-hash HASH --incoming TOKEN [--keep N --runs N ...]
    python3 agent_run.py race ... --incoming TOKEN   (build --device: time the uploaded candidates/ side by side)
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from types import ModuleType
from typing import IO, TYPE_CHECKING

if __package__:
    from .agent import Failure, Paths, emit, facts, paths, serve
else:  # on the device: agent.py beside this script in the upload (this script is __main__, agent.py imported once)
    from agent import Failure, Paths, emit, facts, paths, serve  # type: ignore[no-redef, unused-ignore]

if TYPE_CHECKING:  # the host's names for what the agent sends it; the device needs none of them
    from edgekiln.compiler.deploy.agent_messages import AgentResult, Venv, Versions
    from edgekiln.compiler.manifest_schema import Profile
    from edgekiln.compiler.runtime_json import Benchmark, Validation


def keeper() -> ModuleType:  # the agent_keep module: beside this file on the device, the package's on the host
    """agent_keep.py: beside this file in the upload on the device; the package's module on the host."""
    if __package__:
        from . import agent_keep
    else:
        import agent_keep  # type: ignore[no-redef, unused-ignore]  # the script's own directory (on the device)
    return agent_keep


def place_bundle(p: Paths) -> None:
    """Move the uploaded copy into bundles/VERSION in one rename (a concurrent deploy may have won)."""
    uploaded = os.path.join(p.incoming, "bundle")
    sent = os.path.isdir(uploaded)
    if sent:
        os.makedirs(os.path.dirname(p.bundle), exist_ok=True)
        try:
            os.rename(uploaded, p.bundle)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    if not os.path.isfile(os.path.join(p.bundle, "manifest.json")):
        if not sent:  # present at the probe, gone now: another deploy's --keep
            raise Failure("copy", "the bundle was removed from the device after the probe: " + p.bundle,
                          "deploy again (it will be uploaded)")
        raise Failure("copy", "the bundle is not on the device after the upload: " + p.bundle)


def last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:") or line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def check_output(cmd: list, kind: str, what: str, hint: str = "", cwd: str | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        output = proc.stdout + "\n" + proc.stderr
        if "No space left on device" in output:
            raise Failure("disk_full", what + " failed: no space left on the device")
        raise Failure(kind, what + " failed: " + last_error_line(output), hint)
    return proc.stdout


def ensure_venv(p: Paths, wheels: str | None, held: list[IO[str]]) -> Venv:
    """Reuse the venv for these requirements, or build it under a lock (devices may share a home).

    The lock stays held, shared, until the run ends: runs reusing a venv never wait for each other, and
    --keep never removes a venv a run is using. Only the maker holds it exclusively."""
    os.makedirs(os.path.dirname(p.venv), exist_ok=True)
    start = time.perf_counter()
    lock = keeper().acquire(p.venv + ".lock", exclusive=False)
    held.append(lock)
    marker = os.path.join(p.venv, ".edgekiln-complete")
    reused = os.path.isfile(marker)
    if not reused:
        fcntl.flock(lock, fcntl.LOCK_EX)  # not atomic: another run may have made it meanwhile
        reused = os.path.isfile(marker)
    if not reused:
        shutil.rmtree(p.venv, ignore_errors=True)  # a half-made venv from an interrupted run
        emit("stage", "venv")
        try:
            make_venv(p.venv, wheels)
            emit("stage", "install")
            pip_install(p, wheels)
        except BaseException:
            shutil.rmtree(p.venv, ignore_errors=True)
            raise
        with open(marker, "w") as f:
            json.dump({"python": sys.executable, "version": sys.version}, f)
    fcntl.flock(lock, fcntl.LOCK_SH)  # the bundle's deploy record names this venv: no remover picks it
    return {"reused": reused, "path": p.venv, "seconds": round(time.perf_counter() - start, 2)}


def make_venv(path: str, wheels: str | None) -> None:
    proc = subprocess.run([sys.executable, "-m", "venv", path], capture_output=True, text=True)
    if proc.returncode == 0:
        return
    output = proc.stdout + proc.stderr
    if "No space left on device" in output:
        raise Failure("disk_full", "python3 -m venv failed: no space left on the device")
    pip_wheels = sorted(f for f in os.listdir(wheels) if f.startswith("pip-")) if wheels else []
    if "ensurepip" not in output or not pip_wheels:
        reason = "ensurepip is not available" if "ensurepip" in output else last_error_line(output)
        raise Failure("venv", "python3 -m venv failed: " + reason,
                      "install python3-venv on the device (sudo apt install python3-venv), "
                      "or ship pip's wheel in --wheels DIR")
    # No ensurepip (Debian without python3-venv): a venv without pip, pip run from its shipped wheel.
    shutil.rmtree(path, ignore_errors=True)
    check_output([sys.executable, "-m", "venv", "--without-pip", path], "venv", "python3 -m venv")
    wheel = os.path.join(wheels, pip_wheels[-1])  # type: ignore[arg-type]
    check_output([os.path.join(path, "bin", "python"), os.path.join(wheel, "pip"), "install", "-q",
                  "--no-index", wheel], "venv", "installing pip from " + pip_wheels[-1])


def pip_install(p: Paths, wheels: str | None) -> None:
    cmd = [os.path.join(p.venv, "bin", "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check", "--no-input", "-r", os.path.join(p.bundle, "requirements.txt")]
    if wheels:
        cmd += ["--no-index", "--find-links", wheels]
    hint = "the wheels in --wheels DIR must cover requirements.txt" if wheels else \
        "ship wheels with --wheels DIR (pip download -r requirements.txt for the device's arch and Python)"
    try:
        check_output(cmd, "pip", "pip install", hint)
    except Failure as exc:  # the usual case on a board: no wheel of the interpreter for its Python or arch
        missing = re.search(r"No matching distribution found for (\S+)", str(exc))
        if not missing:
            raise
        raise Failure("no_wheel", "pip install failed: no {} wheel for this device's Python {} ({}) {}".format(
            missing.group(1), platform.python_version(), platform.machine(),
            "in --wheels" if wheels else "on its package index"), hint) from None


def validate(p: Paths, python: str) -> Validation:
    proc = subprocess.run([python, "-m", "runtime", "validate", "--json"], cwd=p.bundle,
                          capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:  # no report: the runtime refused the bundle (checksum, unreadable manifest)
        reason = last_error_line(proc.stderr + proc.stdout)
        reason = reason[len("error: "):] if reason.startswith("error: ") else reason
        raise Failure("validation", "validation failed: " + reason,
                      validation={"passed": False, "error": reason, "samples": []}) from None
    if proc.returncode != 0 or not report.get("passed"):
        bad = [{**s, "max_abs_diff": float("inf") if s["max_abs_diff"] is None else s["max_abs_diff"]}
               for s in report.get("samples", []) if not s["passed"]]  # null: a sentence's token ids changed
        worst: dict = max(bad, key=lambda s: s["max_abs_diff"]) if bad else {"index": "?", "max_abs_diff": 0.0}
        raise Failure("validation", "validation mismatch: {} of {} golden samples differ, worst sample {} "
                      "max |diff| {:.4g} (atol {:g})".format(len(bad), len(report.get("samples", [])),
                                                             worst["index"], worst["max_abs_diff"],
                                                             report.get("atol", 0.0)),
                      "the bundle's model or golden.npz differs from what was built, or this interpreter "
                      "computes differently", validation=report)
    return report


def bench(p: Paths, python: str, args: argparse.Namespace) -> Benchmark:
    cmd = [python, "-m", "runtime", "bench", "--json", "--runs", str(args.runs), "--warmup", str(args.warmup)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = check_output(cmd, "bench", "python -m runtime bench", cwd=p.bundle)
    return json.loads(out[out.index("{"):])


def profile(p: Paths, python: str, args: argparse.Namespace) -> Profile:
    """Per-op time on the device (`python -m runtime profile`): --profile only, it takes longer than bench."""
    cmd = [python, "-m", "runtime", "profile", "--json"] + (["--threads", str(args.threads)] if args.threads else [])
    out = check_output(cmd, "bench", "python -m runtime profile", cwd=p.bundle)
    return json.loads(out[out.index("{"):])


def packages(p: Paths, python: str) -> Versions:
    """Versions of the required packages and of the bundle's runtime, as the venv sees them."""
    with open(os.path.join(p.bundle, "requirements.txt")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    names = [re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0] for line in lines]
    code = ("import json, sys, importlib.metadata as m, runtime\n"
            "v = {}\nfor n in sys.argv[1:]:\n"
            "    try: v[n] = m.version(n)\n    except m.PackageNotFoundError: v[n] = None\n"
            "print(json.dumps({'packages': v, 'runtime': runtime.__version__}))")
    out = check_output([python, "-c", code] + names, "bench", "reading package versions", cwd=p.bundle)
    return json.loads(out[out.index("{"):])


def run(args: argparse.Namespace) -> None:
    p, keep = paths(args), keeper()  # imported now: incoming/ (where it is) goes before the end
    emit("stage", "copied")
    held = [keep.acquire(keep.bundle_lock(p.base, args.bundle), exclusive=False)]  # no --keep removes it now
    try:
        result = checked_run(p, args, held)
        keep.write_record(p.bundle, args.bundle, sequence=keep.next_sequence(p.base), deployed_utc=keep.utc_now())
        result["pruned"] = keep.prune(p.base, args.bundle, args.keep)
        os.makedirs(os.path.join(p.base, "results"), exist_ok=True)
        with open(os.path.join(p.base, "results", args.bundle + ".json"), "w") as f:
            json.dump(result, f, indent=2)
    finally:
        for lock in held:
            lock.close()
    emit("result", result)


def checked_run(p: Paths, args: argparse.Namespace, held: list[IO[str]]) -> AgentResult:
    """Place the bundle, make or reuse its venv, validate, bench: the result, or a Failure."""
    try:
        place_bundle(p)
        keeper().claim(p.base, p.bundle, p.venv, args.bundle)
        wheels = os.path.join(p.incoming, "wheels")
        venv = ensure_venv(p, wheels if os.path.isdir(wheels) else None, held)
        python = os.path.join(venv["path"], "bin", "python")
        emit("stage", "validate")
        t0 = time.perf_counter()
        validation = validate(p, python)
        emit("stage", "bench")
        t1 = time.perf_counter()
        latency = bench(p, python, args)
        t2 = time.perf_counter()
        per_op = profile(p, python, args) if args.profile else None
        versions = packages(p, python)
    finally:
        shutil.rmtree(p.incoming, ignore_errors=True)
    return {"facts": facts(p.base), "bundle_dir": p.bundle, "venv": venv, "validation": validation,
            "latency": latency, "profile": per_op, "packages": versions["packages"],
            "runtime_version": versions["runtime"],
            "timings_s": {"venv": venv["seconds"], "validate": round(t1 - t0, 2), "bench": round(t2 - t1, 2)}}


def race(args: argparse.Namespace) -> None:
    """Time the upload's candidate models in one interleaved race, in the venv for their requirements;
    nothing stays on the device but the venv (the upload is a build's candidates, not a bundle)."""
    p = paths(args)
    p = p._replace(bundle=os.path.join(p.incoming, "bundle"))
    held: list[IO[str]] = []  # the venv's lock, closed at the end
    emit("stage", "copied")
    try:
        wheels = os.path.join(p.incoming, "wheels")
        venv = ensure_venv(p, wheels if os.path.isdir(wheels) else None, held)
        emit("stage", "race")
        folder = os.path.join(p.bundle, "candidates")
        cmd = [os.path.join(venv["path"], "bin", "python"), "-m", "runtime", "race", "--json",
               "--runs", str(args.runs)] + (["--threads", str(args.threads)] if args.threads else [])
        out = check_output(cmd + [os.path.join(folder, f) for f in sorted(os.listdir(folder))], "bench",
                           "python -m runtime race", cwd=p.bundle)
    finally:
        for lock in held:
            lock.close()
        shutil.rmtree(p.incoming, ignore_errors=True)
    emit("result", {"facts": facts(p.base), "venv": venv, "race": json.loads(out[out.index("{"):])})


def main(argv: list | None = None) -> int:
    return serve({"run": run, "race": race}, argv)


if __name__ == "__main__":
    sys.exit(main())
