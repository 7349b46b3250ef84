"""edgekiln's version, in a module of its own: the compiler records it without importing the API module."""

__version__ = "0.1.0"
