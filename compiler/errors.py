"""One exception hierarchy: a message saying what is wrong and a hint saying what to do.

The CLI prints `error: <message> (<hint>)` on one line and exits 1; nothing else in the
compiler prints errors or calls sys.exit.
"""

from __future__ import annotations


class EdgekilnError(Exception):
    """Base of every error the user can act on."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The whole error as a single line (newlines from third-party text are folded)."""
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        return " ".join(text.split())


class InputModelError(EdgekilnError):
    """The source model cannot be read, or is refused (unsafe, unsupported)."""


class DataError(EdgekilnError):
    """Calibration or evaluation data does not fit the model."""


class ConversionError(EdgekilnError):
    """A converter or quantizer failed on this model."""


class TargetError(EdgekilnError):
    """Unknown target, bad target file, or a bundle that cannot run on the target."""


class OutputError(EdgekilnError):
    """The output bundle cannot be written (exists, not writable)."""


class RecipeError(EdgekilnError):
    """Inconsistent or invalid build options."""


class DeployError(EdgekilnError):
    """A deploy cannot start (bad bundle, inventory, options) or some device failed."""


class ValidationError(EdgekilnError):
    """A bundle's golden outputs did not reproduce (or its runtime refused to run)."""


class EmulationError(EdgekilnError):
    """The emulated device userland cannot be built or run (qemu missing, no network, no wheel)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of a third-party exception's message (its type when it has none), for a
    one-line error."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)[:limit]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the same cleanups run."""
