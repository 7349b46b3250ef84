"""System packages the tests need: skip with the reason where they are missing, fail in CI.

`make test` installs them (tests/system_packages.sh) when it can; where it cannot (no root, no
apt-get), the tests that need them are skipped with one line saying what to install. CI sets
EDGEKILN_REQUIRE_SYSTEM=1, which turns those skips into failures: there, nothing may go untested.
"""

from __future__ import annotations

import os

import pytest

REQUIRED = ("EDGEKILN_REQUIRE_SYSTEM", "EDGEKILN_REQUIRE_EMULATION")  # the second: the name before round 2


def require(missing: str | None) -> None:
    """Skip (or, in CI, fail) the calling test with `missing` when it is not None."""
    if missing is None:
        return
    if any(os.environ.get(name) for name in REQUIRED):
        pytest.fail(f"{missing} (required here: EDGEKILN_REQUIRE_SYSTEM is set)")
    pytest.skip(missing)
