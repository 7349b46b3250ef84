"""The manifest snapshots of the recipes test_manifest_snapshot.py leaves out (FIRST_FILE): a second file, so
that pytest-xdist's --dist loadfile can run the two halves on two workers."""

from __future__ import annotations

import json

import pytest

from tests.manifest_snapshot import FIRST_FILE, RECIPES, RECORDED, build_options, bundle_masked, differences, masked

pytestmark = pytest.mark.integration
REST = sorted(set(RECIPES) - set(FIRST_FILE))


@pytest.mark.parametrize("name", REST)
def test_manifest_equals_the_recorded_one(name, shared_bundle):
    recorded = masked(json.loads((RECORDED / f"{name}.json").read_text()))  # masked as the code masks today
    built = json.loads(json.dumps(bundle_masked(shared_bundle(**build_options(name)))))  # tuples as lists
    assert differences(recorded, built) == []


def test_the_two_files_check_every_recipe_once():
    assert set(FIRST_FILE) <= set(RECIPES) and len(set(FIRST_FILE)) == len(FIRST_FILE)
    assert sorted([*FIRST_FILE, *REST]) == sorted(RECIPES)
