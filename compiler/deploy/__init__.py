"""Deploy a bundle to real devices over SSH, validate and benchmark it there, and record the figures.

    transport.py  the system ssh client; ssh's failures as one-line DeviceFailures
    agent.py      the device side (stdlib only), sent over ssh: probe, facts, what every agent command shares
    agent_run.py  the device side of run and race: the bundle placed, its venv, validate, bench
    agent_keep.py the device side of --keep: deploy records, locks, old versions and unused venvs removed
    agent_upload.py  the device side of an upload: unpacked under a lock, removed if cut short, then the agent
    agent_messages.py  what the agent sends the host (probe, result, --keep's report), as types for the host
    remote.py     one device: probe, upload what it lacks, run the agent, fetch its result
    fleet.py      many devices in parallel, progress and summary tables
    race.py       build --device: the build's candidates timed on the device before the choice
    records.py    measurements/<device-id>.json, the manifest's latency.device, `inspect` lines
"""

from __future__ import annotations

from pathlib import Path

from edgekiln.compiler.deploy import records
from edgekiln.compiler.deploy.fleet import destinations, run_fleet
from edgekiln.compiler.deploy.remote import DeployOptions, DeviceResult
from edgekiln.compiler.deploy.transport import SshOptions
from edgekiln.compiler.errors import DeployError
from edgekiln.compiler.manifest_schema import Manifest

__all__ = ["DeployOptions", "SshOptions", "deploy_command", "destinations", "measure_after_build"]


def deploy_command(bundle: Path, hosts: list[str], inventory: Path | None, options: DeployOptions,
                   parallel: int, again: bool = False) -> list[DeviceResult]:
    """`edgekiln deploy`: every device gets a row; any failure makes the command fail after all have run.
    A rerun deploys only to the devices without a passing record of this bundle (again: to every device)."""
    devices = destinations(hosts, inventory)
    outcomes = run_fleet(bundle, devices, options, parallel, resume=not again)
    _refresh_report(bundle, outcomes)
    _raise_failures(outcomes, "")
    return outcomes


def measure_after_build(bundle: Path, hosts: list[str], options: DeployOptions) -> Manifest | None:
    """`build --device`: deploy the new bundle; the device figures go into its manifest's latency.device."""
    outcomes = run_fleet(bundle, destinations(hosts, None), options, parallel=len(hosts))
    measured = [o.record for o in outcomes if o.ok and o.record is not None]
    manifest = records.record_in_manifest(bundle, measured) if measured else None
    _refresh_report(bundle, outcomes)
    _raise_failures(outcomes, f"the bundle was written to {bundle}, but ")
    return manifest


def _refresh_report(bundle: Path, outcomes: list[DeviceResult]) -> None:
    """report.html is a view of the bundle's files: remade once a device's figures were added to them."""
    from edgekiln.compiler import report

    if any(o.record is not None and not o.earlier for o in outcomes) and (bundle / report.REPORT_FILE).is_file():
        report.write(bundle)


def _raise_failures(outcomes: list[DeviceResult], prefix: str) -> None:
    failed = [(o.destination, o.failure) for o in outcomes if o.failure is not None]
    if len(failed) == 1 and len(outcomes) == 1:
        destination, f = failed[0]
        raise DeployError(f"{prefix}{destination}: {f.message}", f.hint)
    if failed:
        names = "; ".join(f"{destination} ({f.kind})" for destination, f in failed)
        raise DeployError(f"{prefix}{len(failed)} of {len(outcomes)} devices failed: {names}",
                          "each failure is described above; the same command again deploys to these alone")
