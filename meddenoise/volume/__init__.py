"""CT volumes in NIfTI, MetaImage and NRRD through SimpleITK (never imports torch or pydicom).

Read a researcher's volume into HU with its geometry (``read_volume``), write one back the same
kind (``write_volume``), write a DICOM series as a volume on SimpleITK's grid
(``write_series_as_volume``), and pair two volumes for evaluation (``pair_volumes``).
"""

from meddenoise.volume.convention import (
    HU_AS_STORED,
    HUConvention,
    check_hu_convention,
    hu_convention_problem,
    stored_to_hu,
)
from meddenoise.volume.formats import SUPPORTED_EXTENSIONS, VolumeFormat, volume_format_of
from meddenoise.volume.from_dicom import dicom_series_to_sitk, volume_from_dicom, write_series_as_volume
from meddenoise.volume.image import CTVolume, VolumePair, from_sitk, pair_volumes, to_sitk
from meddenoise.volume.io import PixelType, check_output_path, read_volume, write_volume

__all__ = [
    "HU_AS_STORED",
    "SUPPORTED_EXTENSIONS",
    "CTVolume",
    "HUConvention",
    "PixelType",
    "VolumeFormat",
    "VolumePair",
    "check_hu_convention",
    "check_output_path",
    "dicom_series_to_sitk",
    "from_sitk",
    "hu_convention_problem",
    "pair_volumes",
    "read_volume",
    "stored_to_hu",
    "to_sitk",
    "volume_format_of",
    "volume_from_dicom",
    "write_series_as_volume",
    "write_volume",
]
