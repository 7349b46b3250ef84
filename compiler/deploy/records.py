"""Device measurements in a bundle: measurements/<device-id>.json, manifest latency.device, inspect lines.

A deploy never touches the model, its checksum or the manifest; `build --device` alone adds the device
figures to the manifest's `latency.device`, rewriting manifest.json atomically (temp file + rename).
A failed validation is recorded too (status `validation_failed`): it says something about the bundle on
that device. Connection or install failures are not: they say nothing about the bundle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from edgekiln.compiler.deploy.agent_messages import AgentResult, Facts
from edgekiln.compiler.deploy.measurement_json import DeviceLatency, MeasuredDevice, Measurement
from edgekiln.compiler.deploy.remote import DeployOptions, DeviceResult
from edgekiln.compiler.manifest import dumps
from edgekiln.compiler.manifest_schema import MANIFEST_FILE, DeviceEntry, Manifest, provenance
from edgekiln.compiler.manifest_schema import read as read_manifest
from edgekiln.runtime import jsonsafe

SCHEMA_VERSION = 1


def measurement(manifest: dict, version: str, outcome: DeviceResult) -> Measurement | None:
    """The record of one device's run, or None when the bundle never ran there."""
    validation = (outcome.result or {}).get("validation") or (outcome.failure.detail.get("validation")
                                                               if outcome.failure else None)
    if validation is None:
        return None
    result: AgentResult = outcome.result or {}
    facts = result.get("facts") or (outcome.probe["facts"] if outcome.probe else None)
    latency, venv = result.get("latency"), result.get("venv")
    return {
        "schema_version": SCHEMA_VERSION,
        "measured_on": "device",
        "device_id": outcome.destination.device_id,
        "destination": str(outcome.destination),
        "measured_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": "ok" if outcome.ok else "validation_failed",
        "error": None if outcome.failure is None else outcome.failure.message,
        "hint": None if outcome.failure is None else outcome.failure.hint,
        "bundle": {"model_sha256": manifest["model"]["sha256"], "version": version,
                   "remote_dir": result.get("bundle_dir")},
        "device": _device(facts),
        "packages": result.get("packages"),
        "runtime_version": result.get("runtime_version"),
        "venv": None if venv is None else {"reused": venv["reused"], "seconds": venv["seconds"]},
        "validation": validation,
        "latency": None if latency is None else {"measured_on": "device", **latency},
        "profile": result.get("profile"),  # deploy --profile: per-op time on the device (runtime/profile.py)
        "timings_s": {**outcome.timings_s, **result.get("timings_s", {})},
        "warnings": mismatch_warnings(manifest, facts or {}),
        "removed_on_device": result.get("pruned"),  # --keep: old versions and venvs removed, bytes freed
    }


def _device(facts: Facts | None) -> MeasuredDevice:
    """What the record keeps of the device's facts (None: not reported)."""
    if facts is None:
        return {"board": None, "cpu": None, "cores": None, "machine": None, "kernel": None, "os": None,
                "python": None, "ram_mb": None, "hostname": None}
    return {"board": facts.get("board"), "cpu": facts.get("cpu"), "cores": facts.get("cores"),
            "machine": facts.get("machine"), "kernel": facts.get("kernel"), "os": facts.get("os"),
            "python": facts.get("python"), "ram_mb": facts.get("ram_mb"), "hostname": facts.get("hostname")}


def mismatch_warnings(manifest: dict, facts: Mapping[str, object]) -> list[str]:
    """The device is not what the bundle was built for: its figures describe another machine."""
    target, notes = manifest.get("target", {}), []
    if facts.get("machine") and target.get("arch") and facts["machine"] != target["arch"]:
        notes.append(f"device is {facts['machine']}, the bundle targets {target['arch']} "
                     f"({target.get('name')})")
    python = ".".join(str(facts.get("python", "")).split(".")[:2])
    if python and target.get("python") and python != target["python"]:
        notes.append(f"device runs Python {python}, the bundle's pins are for Python {target['python']}")
    return notes


def measured_before(bundle: Path, version: str, options: DeployOptions) -> dict[str, Measurement]:
    """The devices (by id) whose record already answers this deploy: this bundle content validated there and
    benchmarked as asked (runs, threads, --profile). A rerun deploys only to the others (`--again`: to all)."""
    found = {}
    for record in read_measurements(bundle):
        latency = record.get("latency") or {}
        if (record.get("status") == "ok" and record.get("bundle", {}).get("version") == version
                and latency.get("runs") == options.runs and options.threads in (None, latency.get("threads"))
                and (record.get("profile") is not None or not options.profile)):
            found[record["device_id"]] = cast(Measurement, record)
    return found


def write_measurement(bundle: Path, record: Measurement) -> Path:
    """measurements/<device-id>.json, replaced atomically."""
    path = bundle / "measurements" / f"{record['device_id']}.json"
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, jsonsafe.dumps(record, indent=2) + "\n")
    return path


def manifest_entry(record: Measurement, latency: DeviceLatency) -> DeviceEntry:
    """The compact form of a record with latency figures that goes into the manifest's latency.device list."""
    d = record["device"]
    return {"device": record["device_id"], "destination": record["destination"], "measured_on": "device",
            "measured_utc": record["measured_utc"], "board": d["board"], "cpu": d["cpu"], "cores": d["cores"],
            "machine": d["machine"], "kernel": d["kernel"], "os": d["os"], "python": d["python"],
            "runtime": latency["runtime"], "runtime_version": latency["runtime_version"],
            "threads": latency["threads"], "init_ms": latency["init_ms"], "first_ms": latency["first_ms"],
            "p50_ms": latency["p50_ms"], "p90_ms": latency["p90_ms"], "p99_ms": latency["p99_ms"],
            "mean_ms": latency["mean_ms"], "runs": latency["runs"], "peak_rss_mb": latency["peak_rss_mb"],
            "validated": record["status"] == "ok",
            "how": provenance("device", "p50 / p90 / p99 / mean of one round of runs after warm-up "
                              "(python -m runtime bench)", runs=latency["runs"], rounds=1, threads=latency["threads"],
                              samples=1, data="the first compiled batch of the golden samples")}


def record_in_manifest(bundle: Path, records: list[Measurement]) -> Manifest:
    """Device figures into manifest.json's latency.device (same device: replaced); nothing else changes."""
    path = bundle / MANIFEST_FILE
    manifest = read_manifest(bundle)
    ours = {r["device_id"] for r in records}
    kept = [e for e in manifest["latency"]["device"] if e.get("device") not in ours]
    measured = [manifest_entry(r, latency) for r in records if (latency := r["latency"]) is not None]
    manifest["latency"]["device"] = kept + measured
    atomic_write_text(path, dumps(manifest))
    return manifest


def atomic_write_text(path: Path, text: str) -> None:
    """Write a sibling temp file, flush it, rename it over `path`: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_measurements(bundle: Path) -> list[dict]:
    """Every readable measurements/*.json of a bundle, sorted by device id."""
    records = []
    for path in sorted((bundle / "measurements").glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a hand-edited or foreign file must not break `inspect`
    return records


def describe(bundle: Path, manifest: Manifest) -> list[str]:
    """One line per device for `inspect`: measurements/*.json, then manifest entries without a file."""
    lines, seen = [], set()
    for r in read_measurements(bundle):
        seen.add(r.get("device_id"))
        d, lat = r.get("device", {}), r.get("latency") or {}
        where = ", ".join(str(x) for x in (d.get("board"), d.get("cpu"), f"Python {d.get('python')}") if x)
        stale = "" if r.get("bundle", {}).get("model_sha256") == manifest["model"]["sha256"] else \
            " (measured for another build of the model)"
        if r.get("status") == "ok":
            lines.append(f"device {r['device_id']} p50 {lat.get('p50_ms')} ms, p90 {lat.get('p90_ms')} ms "
                         f"({lat.get('threads')} threads, {lat.get('runtime')} {lat.get('runtime_version')}; "
                         f"{where}; validated {r.get('measured_utc')})  [device-measured]{stale}")
        else:
            lines.append(f"device {r.get('device_id')} FAILED {r.get('error')} ({where}; "
                         f"{r.get('measured_utc')}){stale}")
    for e in manifest["latency"].get("device", []):
        if e.get("device") not in seen:
            lines.append(f"device {e.get('device')} p50 {e.get('p50_ms')} ms ({e.get('threads')} threads, "
                         f"{e.get('runtime')} {e.get('runtime_version')}; {e.get('board') or e.get('cpu')})"
                         "  [device-measured, manifest]")
    return lines
