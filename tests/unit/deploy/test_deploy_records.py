"""Measurement records, the manifest's latency.device, and the `inspect` lines, on plain JSON bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekiln.compiler.deploy import records
from edgekiln.compiler.deploy.remote import DeviceResult
from edgekiln.compiler.deploy.transport import DeviceFailure, parse_destination

FACTS = {"board": "Raspberry Pi 4 Model B Rev 1.4", "cpu": "4x Cortex-A72", "cores": 4,
         "machine": "aarch64", "kernel": "6.6.31", "os": "Debian GNU/Linux 12 (bookworm)",
         "python": "3.11.2", "ram_mb": 3794, "hostname": "pi4"}
LATENCY = {"runtime": "ai-edge-litert", "runtime_version": "2.3.0", "threads": 4, "init_ms": 9.1,
           "first_ms": 2.0, "p50_ms": 1.5, "p90_ms": 1.7, "p99_ms": 2.4, "mean_ms": 1.6, "runs": 50,
           "peak_rss_mb": 52.0}
VALID = {"passed": True, "max_abs_diff": 0.0, "atol": 0.0078, "rtol": 0.0,
         "samples": [{"index": 0, "passed": True, "max_abs_diff": 0.0}]}


SNAPSHOT = Path(__file__).resolve().parents[2] / "data" / "manifests" / "mnist_cnn_int8.json"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A real build's manifest (tests/data/manifests), with the fields these tests read set."""
    manifest = json.loads(SNAPSHOT.read_text())
    manifest["model"].update(file="model.tflite", sha256="ab" * 32)
    manifest["target"].update(name="rpi4", arch="aarch64", python="3.11")
    manifest["latency"].update(host={**manifest["latency"]["host"], "p50_ms": 0.08}, device=[])
    manifest["recipe"]["source"] = "m.keras"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return tmp_path


def _ok(text: str) -> DeviceResult:
    result = {"facts": FACTS, "latency": LATENCY, "validation": VALID,
              "bundle_dir": "/home/pi/edgekiln/bundles/x",
              "venv": {"reused": False, "path": "/v", "seconds": 14.0}, "packages": {"numpy": "2.4.6"},
              "runtime_version": "1", "timings_s": {"bench": 0.4}}
    return DeviceResult(parse_destination(text), probe={"facts": FACTS}, result=result,
                        timings_s={"total": 20.0})


def test_an_ok_run_becomes_a_record_and_a_manifest_entry(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = records.measurement(manifest, "x-123", _ok("pi@10.0.0.5"))
    assert record["status"] == "ok" and record["device_id"] == "pi@10.0.0.5" and record["warnings"] == []
    assert record["latency"] == {"measured_on": "device", **LATENCY}
    assert record["venv"] == {"reused": False, "seconds": 14.0}
    path = records.write_measurement(bundle, record)
    assert path == bundle / "measurements" / "pi@10.0.0.5.json" and json.loads(path.read_text()) == record

    updated = records.record_in_manifest(bundle, [record])
    (entry,) = updated["latency"]["device"]
    assert entry["p50_ms"] == 1.5 and entry["board"] == FACTS["board"] and entry["validated"] is True
    assert {k: v for k, v in updated.items() if k != "latency"} == \
        {k: v for k, v in manifest.items() if k != "latency"}
    assert json.loads((bundle / "manifest.json").read_text()) == updated
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_the_same_device_is_replaced_and_others_are_kept(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    first, other = (records.measurement(manifest, "x", _ok(d)) for d in ("pi@a", "pi@b"))
    records.record_in_manifest(bundle, [first, other])
    again = records.measurement(manifest, "x", _ok("pi@a"))
    again["latency"]["p50_ms"] = 1.2
    devices = records.record_in_manifest(bundle, [again])["latency"]["device"]
    assert sorted((e["device"], e["p50_ms"]) for e in devices) == [("pi@a", 1.2), ("pi@b", 1.5)]


def test_failures_are_recorded_only_when_the_bundle_ran(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    unreachable = DeviceResult(parse_destination("pi@c"),
                               failure=DeviceFailure("unreachable", "unreachable: x"))
    assert records.measurement(manifest, "x", unreachable) is None
    bad = {**VALID, "passed": False, "samples": [{"index": 0, "passed": False, "max_abs_diff": 0.4}]}
    mismatch = DeviceResult(parse_destination("pi@d"), probe={"facts": {**FACTS, "machine": "armv7l"}},
                            failure=DeviceFailure("validation", "validation mismatch: ...", "",
                                                  {"validation": bad}))
    record = records.measurement(manifest, "x", mismatch)
    assert record["status"] == "validation_failed" and record["latency"] is None
    assert record["validation"] == bad
    assert record["warnings"] == ["device is armv7l, the bundle targets aarch64 (rpi4)"]
    assert records.record_in_manifest(bundle, [record])["latency"]["device"] == []  # no figures, no entry


def test_inspect_lines_cover_files_and_manifest_entries_and_skip_broken_files(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    records.write_measurement(bundle, records.measurement(manifest, "x", _ok("pi@a")))
    (bundle / "measurements" / "junk.json").write_text("{not json")
    manifest["latency"]["device"] = [{"device": "pi@old", "p50_ms": 3.0, "threads": 4,
                                      "runtime": "tflite-runtime", "runtime_version": "2.14.0",
                                      "cpu": "Cortex-A53"}]
    lines = records.describe(bundle, manifest)
    assert len(lines) == 2
    assert lines[0].startswith("device pi@a p50 1.5 ms, p90 1.7 ms (4 threads, ai-edge-litert 2.3.0;")
    assert lines[0].endswith("[device-measured]") and "Raspberry Pi 4 Model B" in lines[0]
    assert lines[1] == ("device pi@old p50 3.0 ms (4 threads, tflite-runtime 2.14.0; Cortex-A53)"
                        "  [device-measured, manifest]")
    manifest["model"]["sha256"] = "cd" * 32  # the bundle was rebuilt since
    assert records.describe(bundle, manifest)[0].endswith("(measured for another build of the model)")
