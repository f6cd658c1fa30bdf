"""Find, read, validate, sort and write CT DICOM series (never imports torch or monai)."""

from meddenoise.dicom.discover import find_series, select_series, series_info_from
from meddenoise.dicom.geometry import TILT_TOLERANCE_DEG
from meddenoise.dicom.problems import Problem, ProblemCode, shown_path, shown_text
from meddenoise.dicom.read import read_series
from meddenoise.dicom.series import CTSeries, ScanResult, SeriesInfo, SkippedFile, SliceRef
from meddenoise.dicom.validate import MAX_DECODED_BYTES, MAX_VOLUME_BYTES, HeaderError, TooLargeError
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
    "MAX_DECODED_BYTES",
    "MAX_VOLUME_BYTES",
    "SMOOTHING",
    "TILT_TOLERANCE_DEG",
    "CTSeries",
    "Derivation",
    "DerivationCode",
    "HeaderError",
    "Problem",
    "ProblemCode",
    "ScanResult",
    "SeriesInfo",
    "SkippedFile",
    "SliceRef",
    "TooLargeError",
    "check_output_location",
    "derived_series_folder",
    "find_series",
    "read_series",
    "select_series",
    "series_info_from",
    "shown_path",
    "shown_text",
    "write_derived_series",
    "write_series_files",
]
