"""meddenoise: denoise low-dose CT DICOM series and measure the result honestly."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meddenoise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["AsyncDenoiser", "Denoiser", "__version__"]


def __getattr__(name: str) -> object:
    """``meddenoise.Denoiser`` and ``meddenoise.AsyncDenoiser``, imported (with torch) only when asked for."""
    if name in ("Denoiser", "AsyncDenoiser"):
        # Imported by name, so the package root (which every layer imports for __version__) does
        # not depend on pipeline in the import graph; the import happens only on first use.
        return getattr(import_module("meddenoise.pipeline.api"), name)
    raise AttributeError(f"module 'meddenoise' has no attribute {name!r}")
