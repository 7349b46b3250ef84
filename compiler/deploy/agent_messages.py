"""What the device agent (agent.py, agent_keep.py) sends the host, as types: its `@@edgekiln probe` and
`@@edgekiln result` lines, and the records it keeps on the device.

The agent runs on the device's own Python, stdlib only, and writes these as plain dicts; it names them here
only for type checking (under TYPE_CHECKING), so none of this travels to the device.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from edgekiln.compiler.manifest_schema import Profile
from edgekiln.compiler.runtime_json import Benchmark, Race, Validation


class Facts(TypedDict):
    """The device as the agent sees it (None: not readable there); free_mb: free disk under the agent's base."""

    hostname: str
    board: str | None
    cpu: str
    cores: int | None
    machine: str
    kernel: str
    os: str
    python: str
    python_executable: str
    ram_mb: int | None
    free_mb: int


class Probe(TypedDict):
    """The probe line: the device's facts, the agent's base directory, and what an upload can leave out."""

    facts: Facts
    base: str
    bundle_present: bool
    venv_ready: bool


class Venv(TypedDict):
    """The venv a run used: reused or made (seconds it took), and where."""

    reused: bool
    path: str
    seconds: float


class Versions(TypedDict):
    """The required packages' versions as the venv sees them (None: not installed), and the runtime's."""

    packages: dict[str, str | None]
    runtime: str


class DeployRecord(TypedDict):
    """bundles/VERSION/.edgekiln-deploy.json: the version, the venvs it used, its place in the deploy order."""

    version: str
    venvs: list[str]
    sequence: NotRequired[int]
    deployed_utc: NotRequired[str]


class Removal(TypedDict):
    """One thing `--keep` removed: an old version (with when it was deployed), a venv, or a leftover's path;
    the bytes it freed and the first error, if any."""

    version: NotRequired[str]
    deployed_utc: NotRequired[str | None]
    venv: NotRequired[str]
    path: NotRequired[str]
    bytes: int
    error: str | None


class PruneReport(TypedDict):
    """What `--keep` removed after a deploy, what it skipped (held or redeployed), and what went wrong."""

    keep: int
    name: str | None
    removed: list[Removal]
    venvs_removed: list[Removal]
    leftovers: list[Removal]
    skipped: list[str]
    bytes_freed: int
    errors: list[str]
    venvs_note: str | None


class AgentResult(TypedDict, total=False):
    """The result line: of a `run` (the bundle validated and benchmarked, and what --keep removed), or of a
    `race` (the build's candidates timed side by side: `race`); the facts and the venv either way."""

    facts: Facts
    venv: Venv
    bundle_dir: str
    validation: Validation
    latency: Benchmark
    profile: Profile | None
    packages: dict[str, str | None]
    runtime_version: str
    timings_s: dict[str, float]
    pruned: PruneReport
    race: Race
