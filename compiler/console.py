"""The terminal every command prints to: one rich Console, below the modules that print (summary, tables)."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output (logs, CI) gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
