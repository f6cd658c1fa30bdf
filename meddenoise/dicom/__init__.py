"""Find, read, validate, sort and write CT DICOM series (never imports torch or monai)."""

from meddenoise.dicom.discover import find_series, select_series, series_info_from
from meddenoise.dicom.read import read_series
from meddenoise.dicom.series import CTSeries, ScanResult, SeriesInfo, SliceRef
from meddenoise.dicom.write import (
    SMOOTHING,
    Derivation,
    DerivationCode,
    check_output_location,
    derived_series_folder,
    write_derived_series,
    write_series_files,
)

__all__ = [
    "SMOOTHING",
    "CTSeries",
    "Derivation",
    "DerivationCode",
    "ScanResult",
    "SeriesInfo",
    "SliceRef",
    "check_output_location",
    "derived_series_folder",
    "find_series",
    "read_series",
    "select_series",
    "series_info_from",
    "write_derived_series",
    "write_series_files",
]
