"""Which devices a deploy goes to: --host values and inventory files."""

from __future__ import annotations

import pytest

from edgekiln.compiler.deploy.fleet import destinations, read_inventory
from edgekiln.compiler.errors import DeployError


def test_inventory_lines_comments_and_ports(tmp_path):
    inventory = tmp_path / "devices.txt"
    inventory.write_text("# lab\npi@10.0.0.5\n\n  pi@10.0.0.6:2222   # the one by the window\nboard-7\n")
    found = read_inventory(inventory)
    assert [str(d) for d in found] == ["pi@10.0.0.5", "pi@10.0.0.6:2222", "board-7"]


def test_a_bad_inventory_line_names_its_file_and_line(tmp_path):
    inventory = tmp_path / "devices.txt"
    inventory.write_text("pi@10.0.0.5\npi@10.0.0.6:http\n")
    with pytest.raises(DeployError, match=r"devices.txt:2: 'pi@10.0.0.6:http' is not a device address"):
        read_inventory(inventory)


def test_hosts_and_inventory_combine_and_duplicates_are_refused(tmp_path):
    inventory = tmp_path / "devices.txt"
    inventory.write_text("pi@b\n")
    assert [str(d) for d in destinations(["pi@a"], inventory)] == ["pi@a", "pi@b"]
    with pytest.raises(DeployError, match="listed more than once: pi@b"):
        destinations(["pi@b"], inventory)
    with pytest.raises(DeployError, match="no device given"):
        destinations([], None)
    with pytest.raises(DeployError, match="cannot read inventory"):
        destinations([], tmp_path / "missing.txt")
