"""The device agent: stdlib-only, old-Python-safe, and its probe run for real (here, as on a device)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.compiler.deploy import agent, agent_keep, agent_run, agent_upload

SOURCE = Path(agent.__file__).read_text()


def _checking_only(tree: ast.Module) -> set[ast.AST]:
    """The statements under `if TYPE_CHECKING:` (the host's type names, never run on the device)."""
    blocks = [node for node in ast.walk(tree) if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
              and node.test.id == "TYPE_CHECKING"]
    return {inner for block in blocks for statement in block.body for inner in ast.walk(statement)}


@pytest.mark.parametrize("module", [agent, agent_keep, agent_run, agent_upload])
def test_agent_is_stdlib_only_and_parses_as_python_3_8(module):
    tree = ast.parse(Path(module.__file__).read_text(), feature_version=(3, 8))
    run = [node for node in ast.walk(tree) if node not in _checking_only(tree)]
    imported = {alias.name.split(".")[0] for node in run if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in run if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"__future__", "agent", "agent_keep"} <= set(sys.stdlib_module_names)  # shipped beside


def _probe(base: Path) -> dict:
    """The agent fed on stdin to a fresh interpreter, exactly as `ssh HOST python3 - probe` runs it."""
    done = subprocess.run([sys.executable, "-", "probe", "--base", str(base), "--bundle", "b-123",
                           "--req-hash", "ab" * 32], input=SOURCE, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("@@edgekiln probe "))
    return json.loads(line.split(" ", 2)[2])


def test_probe_reports_facts_and_what_the_device_already_has(tmp_path):
    base = tmp_path / "edgekiln"
    first = _probe(base)
    assert first["base"] == str(base) and not first["bundle_present"] and not first["venv_ready"]
    facts = first["facts"]
    assert facts["python"] == ".".join(map(str, sys.version_info[:3])) and facts["cores"] >= 1
    assert facts["cpu"] and facts["kernel"] and facts["machine"] and facts["free_mb"] > 0
    assert not base.exists()  # probing creates nothing

    (base / "bundles" / "b-123").mkdir(parents=True)
    (base / "bundles" / "b-123" / "manifest.json").write_text("{}")
    venv = base / "venvs" / agent.venv_key("ab" * 32)
    venv.mkdir(parents=True)
    (venv / ".edgekiln-complete").write_text("{}")
    # venv_key depends on the interpreter; the subprocess runs the same one as this test.
    assert _probe(base)["bundle_present"] and _probe(base)["venv_ready"]


def test_pip_errors_are_reduced_to_their_last_error_line():
    text = ("Looking in links: wheels\nProcessing ./tqdm.whl\n"
            "ERROR: Could not find a version that satisfies the requirement numpy==2.4.6\n"
            "ERROR: No matching distribution found for numpy==2.4.6\n")
    assert agent_run.last_error_line(text) == "ERROR: No matching distribution found for numpy==2.4.6"
    assert agent_run.last_error_line("Traceback ...\nOSError: boom\n\n") == "OSError: boom"


def test_arm_cores_are_named_from_their_part_number(tmp_path, monkeypatch):
    core = "processor\t: {}\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n"
    cpuinfo = "".join(core.format(k) for k in range(4))
    monkeypatch.setattr(agent, "_read", lambda path: cpuinfo if path == "/proc/cpuinfo" else "")
    assert agent.cpu_name() == "4x Cortex-A72"


def test_run_as_uploaded_imports_the_agent_beside_it_and_reports_its_failure(tmp_path):
    """agent_run.py run as the upload runs it (a script beside agent.py and agent_keep.py, nothing installed):
    its Failure is the one agent.serve catches, so a bundle gone since the probe is one `error` line, exit 3."""
    upload = tmp_path / "edgekiln" / "incoming" / "tok"
    upload.mkdir(parents=True)
    for module in (agent, agent_run, agent_keep):
        (upload / Path(module.__file__).name).write_text(Path(module.__file__).read_text())
    done = subprocess.run([sys.executable, str(upload / "agent_run.py"), "run", "--base", str(tmp_path / "edgekiln"),
                           "--bundle", "b-123", "--req-hash", "ab" * 32, "--incoming", "tok"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == '@@edgekiln stage "copied"'
    error = json.loads(lines[-1].split("@@edgekiln error ", 1)[1])
    assert error["kind"] == "copy" and error["message"].startswith("the bundle was removed from the device"), error
    assert not upload.exists()  # the upload is removed at the end, failed or not
