"""Many devices at once: bounded parallelism, a live progress table, a summary table, one line per failure.

Each device runs in its own worker and every failure is caught into that device's row, so one dead or
failing board never stops the others; each record is written to the bundle as soon as its device finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from rich.live import Live
from rich.table import Table

from edgekiln.compiler.console import console
from edgekiln.compiler.deploy import records
from edgekiln.compiler.deploy.agent_messages import AgentResult, PruneReport, Venv
from edgekiln.compiler.deploy.remote import DeployOptions, DeviceResult, PreparedBundle, deploy
from edgekiln.compiler.deploy.transport import Destination, DeviceFailure, parse_destination
from edgekiln.compiler.errors import DeployError
from edgekiln.compiler.profile import on_device


def read_inventory(path: Path) -> list[Destination]:
    """One `user@host[:port]` per line; blank lines and `# comments` are skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeployError(f"cannot read inventory {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise DeployError(f"inventory {path} is not a text file", "one user@host[:port] per line") from None
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            try:
                found.append(parse_destination(line))
            except DeployError as exc:
                raise DeployError(f"{path}:{number}: {exc.message}", exc.hint) from None
    return found


def destinations(hosts: list[str], inventory: Path | None) -> list[Destination]:
    """--host values, then inventory lines; a device listed twice is an error (one record would be lost)."""
    found = [parse_destination(h) for h in hosts] + (read_inventory(inventory) if inventory else [])
    if not found:
        raise DeployError("no device given", "pass --host user@host[:port] or --inventory FILE")
    ids = [d.device_id for d in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DeployError(f"device listed more than once: {', '.join(twice)}")
    return found


def run_fleet(bundle: Path, devices: list[Destination], options: DeployOptions,
              parallel: int, resume: bool = False) -> list[DeviceResult]:
    """Deploy to every device with at most `parallel` at a time; records land in bundle/measurements/.
    resume: skip the devices whose record already answers this deploy (a rerun after failures)."""
    if parallel < 1:
        raise DeployError(f"--parallel must be at least 1, got {parallel}")
    prepared = PreparedBundle(bundle, options.wheels)
    earlier = records.measured_before(bundle, prepared.version, options) if resume else {}
    outcomes = [DeviceResult(d, record=earlier[d.device_id], earlier=True) for d in devices if d.device_id in earlier]
    todo = [d for d in devices if d.device_id not in earlier]
    try:
        with _progress(todo) as (stage_of, finished), ThreadPoolExecutor(max(1, min(parallel, len(todo)))) as pool:
            futures = [pool.submit(_one, prepared, d, options, stage_of(d)) for d in todo]
            for future in as_completed(futures):
                outcome = future.result()
                record = records.measurement(prepared.manifest, prepared.version, outcome)
                if record is not None:
                    if profile := record["profile"]:  # --profile: the device's per-op times with each op's static facts
                        record["profile"] = on_device(profile, bundle, prepared.manifest)
                    records.write_measurement(bundle, record)
                    outcome.record = record
                outcomes.append(outcome)
                finished(outcome)
    finally:
        prepared.close()
    order = {d.device_id: k for k, d in enumerate(devices)}
    outcomes.sort(key=lambda o: order[o.destination.device_id])
    print_summary(prepared.manifest, outcomes)
    return outcomes


def _one(prepared: PreparedBundle, dest: Destination, options: DeployOptions,
         stage: Callable[[str], None]) -> DeviceResult:
    try:
        return deploy(prepared, dest, options, stage)
    except Exception as exc:  # noqa: BLE001  a bug or OS error on one device must not lose the others
        return DeviceResult(dest, failure=DeviceFailure("error", f"{type(exc).__name__}: {exc}"))


@contextmanager
def _progress(devices: list[Destination]) -> Iterator[tuple[Callable, Callable]]:
    """A live table (device, stage, seconds) on a terminal; one line per finished device otherwise."""
    lock, start = threading.Lock(), time.perf_counter()
    state: dict[str, list] = {d.device_id: ["waiting", start, None] for d in devices}  # stage, started, finished

    def render() -> Table:
        table = Table(show_header=True, title=f"deploying to {len(devices)} device(s)")
        for column in ("device", "stage", "s"):
            table.add_column(column)
        with lock:
            for d in devices:
                stage, since, until = state[d.device_id]
                table.add_row(str(d), stage, f"{(until or time.perf_counter()) - since:.0f}")
        return table

    def stage_of(dest: Destination) -> Callable[[str], None]:
        def update(name: str) -> None:
            with lock:
                since = time.perf_counter() if name == "connecting" else state[dest.device_id][1]
                state[dest.device_id] = [name, since, None]
        return update

    def finished(outcome: DeviceResult) -> None:
        done = sum(s[0] in ("done", "FAILED") for s in state.values()) + 1
        with lock:
            row = state[outcome.destination.device_id]
            row[0], row[2] = ("done" if outcome.ok else "FAILED"), time.perf_counter()
        if not console.is_terminal:
            console.print(f"[{done}/{len(devices)}] {outcome.destination}: {_verdict(outcome)} "
                          f"({outcome.timings_s.get('total', 0):.1f} s)")

    if not console.is_terminal:
        yield stage_of, finished
        return
    with Live(get_renderable=render, console=console, refresh_per_second=4, transient=True):
        yield stage_of, finished


def _verdict(outcome: DeviceResult) -> str:
    if outcome.failure is None and outcome.result is not None:
        return f"ok, p50 {outcome.result['latency']['p50_ms']} ms"
    return f"FAILED {outcome.failure.one_line()}" if outcome.failure else "FAILED"


def _venv(venv: Venv | None) -> str:
    if not venv:
        return ""
    return "reused" if venv["reused"] else f"new {venv['seconds']:.0f} s"


def print_summary(manifest: dict, outcomes: list[DeviceResult]) -> None:
    """One row per device, then the build host's figure and the estimate for comparison."""
    table = Table(title=f"edgekiln deploy: {manifest['source']['file_name']} ({manifest['model']['file']})")
    for column in ("device", "board / cpu", "python", "interpreter", "venv", "result"):
        table.add_column(column)
    for column in ("p50 ms", "p90 ms", "s"):
        table.add_column(column, justify="right")
    for o in outcomes:
        result: AgentResult = o.result or {}
        earlier = o.record if o.earlier else None
        facts = result.get("facts") or (o.probe["facts"] if o.probe else None) or (earlier and earlier["device"])
        lat = result.get("latency") or (earlier and earlier["latency"])
        status = "PASS" if o.failure is None else f"[red]{o.failure.kind}[/red]"
        table.add_row(str(o.destination), (facts["board"] or facts["cpu"] or "") if facts else "",
                      (facts["python"] or "") if facts else "",
                      f"{lat['runtime']} {lat['runtime_version']}" if lat else "",
                      _venv(result.get("venv")) or ("earlier" if o.earlier else ""),
                      status, str(lat["p50_ms"]) if lat else "", str(lat["p90_ms"]) if lat else "",
                      f"{o.timings_s.get('total', 0):.1f}")
    console.print(table)
    if skipped := [o for o in outcomes if o.earlier]:
        console.print(f"{len(skipped)} device(s) skipped: measured earlier with this bundle "
                      f"({', '.join(str(o.destination) for o in skipped)}); --again measures them again")
    host, estimate = manifest["latency"]["host"], manifest["latency"].get("target_estimate")
    console.print(f"build host p50 {host['p50_ms']} ms ({host['threads']} threads, {host.get('cpu')})"
                  + (f"; target estimate p50 {estimate['p50_ms']} ms" if estimate else ""))
    for o in outcomes:
        for line in removal_lines((o.result or {}).get("pruned")):
            console.print(f"{o.destination}: {line}")
    for o in outcomes:
        if o.failure is not None:
            console.print(f"[bold red]FAILED[/bold red] {o.destination}: {o.failure.one_line()}")


def removal_lines(pruned: PruneReport | None) -> list[str]:
    """What --keep removed on one device, in words (nothing when nothing was removed or went wrong)."""
    if pruned is None:
        return []
    versions, venvs = len(pruned.get("removed", [])), len(pruned.get("venvs_removed", []))
    parts = [f"{versions} old version(s) of {pruned.get('name')}"] if versions else []
    parts += [f"{venvs} venv(s) no remaining bundle uses"] if venvs else []
    parts += [f"{len(pruned['leftovers'])} leftover(s) of an interrupted removal"] if pruned.get("leftovers") else []
    lines = [f"removed {' and '.join(parts)}, {pruned['bytes_freed'] / 2**20:.1f} MB freed"] if parts else []
    if pruned.get("errors"):
        lines.append(f"[yellow]could not remove everything[/yellow]: {pruned['errors'][0]}")
    return lines
