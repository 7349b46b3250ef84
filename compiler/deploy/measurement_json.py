"""A bundle's measurements/<device-id>.json, as types: one device's run of the bundle (deploy/records.py writes
it; `inspect` and the report read these files defensively, as files of any age).

The manifest's compact entry of the same run is manifest_schema.DeviceEntry.
"""

from __future__ import annotations

from typing import TypedDict

from edgekiln.compiler.deploy.agent_messages import PruneReport
from edgekiln.compiler.manifest_schema import DeviceFacts, Profile
from edgekiln.compiler.runtime_json import Benchmark, Validation


class MeasuredBundle(TypedDict):
    """Which bundle ran: its model's sha256, its content version, and its folder on the device."""

    model_sha256: str
    version: str
    remote_dir: str | None


class MeasuredDevice(DeviceFacts):
    ram_mb: int | None
    hostname: str | None


class DeviceLatency(Benchmark):
    """The bundle runtime's benchmark on the device (`bench --json`), labelled where it was measured."""

    measured_on: str


class VenvUsed(TypedDict):
    """The venv the run used: reused or made, and the seconds that took (its path stays on the device)."""

    reused: bool
    seconds: float


class Measurement(TypedDict):
    """One device's run: where and when, whether the bundle validated there (status `ok` or `validation_failed`,
    with the error and hint), the bundle and the device, what was installed, the validation, the benchmark and
    (deploy --profile) the per-op profile, the stages' seconds, the mismatch warnings and what --keep removed."""

    schema_version: int
    measured_on: str
    device_id: str
    destination: str
    measured_utc: str
    status: str
    error: str | None
    hint: str | None
    bundle: MeasuredBundle
    device: MeasuredDevice
    packages: dict[str, str | None] | None
    runtime_version: str | None
    venv: VenvUsed | None
    validation: Validation
    latency: DeviceLatency | None
    profile: Profile | None
    timings_s: dict[str, float]
    warnings: list[str]
    removed_on_device: PruneReport | None
