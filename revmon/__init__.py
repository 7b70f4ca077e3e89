"""revmon: event-driven revenue performance monitoring on Kafka, exported to Prometheus."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("revmon")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
