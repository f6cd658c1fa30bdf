"""meddenoise: denoise low-dose CT DICOM series and measure the result honestly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("meddenoise")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
