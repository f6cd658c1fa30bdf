"""The volume file formats meddenoise reads and writes, chosen by extension, and their headers.

SimpleITK reports a spacing of 1 mm for a file that stores none, so whether a file *declares*
its spacing is read from its header:

- MetaImage (.mha, .mhd): an ``ElementSpacing`` or ``ElementSize`` line;
- NRRD (.nrrd): a ``space directions`` field (with a vector that is not ``none``) or ``spacings``;
- NIfTI (.nii, .nii.gz): ``pixdim[1..3]`` positive, and not the all-ones default of a header
  with neither qform nor sform (an ANALYZE-style header that never set them).

A NIfTI header that deliberately states 1×1×1 mm with no qform/sform is therefore refused too;
adding a qform or sform (any code) makes it acceptable.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from enum import StrEnum
from pathlib import Path

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger(__name__)

_HEADER_LIMIT_BYTES = 65536


class VolumeFormat(StrEnum):
    """A volume file format, named by its extension (without the dot)."""

    NIFTI = "nii"
    NIFTI_GZ = "nii.gz"
    MHA = "mha"
    MHD = "mhd"
    NRRD = "nrrd"

    @property
    def extension(self) -> str:
        """The extension with its dot, e.g. '.nii.gz'."""
        return f".{self.value}"

    @property
    def image_io(self) -> str:
        """The name of the ITK ImageIO that reads and writes this format."""
        return {"nii": "NiftiImageIO", "nii.gz": "NiftiImageIO", "nrrd": "NrrdImageIO"}.get(
            self.value, "MetaImageIO"
        )


SUPPORTED_EXTENSIONS = ", ".join(f.extension for f in VolumeFormat)
"""The supported extensions, for messages."""


def volume_format_of(path: Path) -> VolumeFormat | None:
    """The format that ``path``'s extension names (case-insensitive), or None.

    Examples
    --------
    >>> volume_format_of(Path("ct.NII.GZ"))
    <VolumeFormat.NIFTI_GZ: 'nii.gz'>
    >>> volume_format_of(Path("ct.dcm")) is None
    True
    """
    name = path.name.lower()
    for fmt in sorted(VolumeFormat, key=lambda f: -len(f.value)):
        if name.endswith(fmt.extension) and len(name) > len(fmt.extension):
            return fmt
    return None


def extension_of(path: Path) -> str:
    """The extension of ``path`` as messages show it ('.nii.gz' counts as one; '' when none)."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1].lower() == ".gz":
        return "".join(suffixes[-2:])
    return path.suffix


def declares_spacing(path: Path, fmt: VolumeFormat, reader: sitk.ImageFileReader) -> bool:
    """Whether the file at ``path`` states its voxel spacing (``reader`` has read its information)."""
    if fmt in (VolumeFormat.NIFTI, VolumeFormat.NIFTI_GZ):
        return _nifti_declares_spacing(reader)
    fields = _text_header(path, fmt)
    if fmt is VolumeFormat.NRRD:
        directions = fields.get("space directions", "")
        has_vector = any(part.strip() not in ("", "none") for part in directions.split(")"))
        return has_vector or "spacings" in fields
    return "elementspacing" in fields or "elementsize" in fields


def _nifti_declares_spacing(reader: sitk.ImageFileReader) -> bool:
    keys = set(reader.GetMetaDataKeys())
    dims = min(3, reader.GetDimension())
    try:
        pixdim = [float(reader.GetMetaData(f"pixdim[{i}]")) for i in range(1, dims + 1)]
        codes = [int(reader.GetMetaData(k)) for k in ("qform_code", "sform_code") if k in keys]
    except (RuntimeError, ValueError):
        logger.debug("NIfTI header without readable pixdim; spacing taken as declared")
        return True
    if any(v <= 0 for v in pixdim):
        return False
    return not (all(v == 1.0 for v in pixdim) and not any(codes))


_NIFTI_FLOATS = {"16": "f4", "64": "f8"}  # NIfTI datatype codes of float32 and float64
_CHUNK_BYTES = 16 * 2**20


def nifti_holds_non_finite(path: Path, fmt: VolumeFormat, reader: sitk.ImageFileReader) -> bool:
    """Whether a float NIfTI's stored voxels hold NaN or infinity (``reader`` has read its
    information). ITK's NIfTI reader turns NaN into 0, so the stored bytes are checked, in chunks."""
    if fmt not in (VolumeFormat.NIFTI, VolumeFormat.NIFTI_GZ):
        return False
    keys = set(reader.GetMetaDataKeys())
    if "datatype" not in keys or reader.GetMetaData("datatype") not in _NIFTI_FLOATS:
        return False
    code = _NIFTI_FLOATS[reader.GetMetaData("datatype")]
    offset = int(float(reader.GetMetaData("vox_offset"))) if "vox_offset" in keys else 352
    opener = gzip.open if fmt is VolumeFormat.NIFTI_GZ else open
    try:
        with opener(path, "rb") as fp:
            order = "<" if int.from_bytes(fp.read(4), "little") == 348 else ">"  # sizeof_hdr
            fp.seek(offset)
            while chunk := fp.read(_CHUNK_BYTES):
                usable = len(chunk) - len(chunk) % int(code[1])
                if not np.isfinite(np.frombuffer(chunk[:usable], dtype=order + code)).all():
                    return True
    except (OSError, EOFError, zlib.error):
        return False  # damaged data: ITK's own read reports it
    return False


def _text_header(path: Path, fmt: VolumeFormat) -> dict[str, str]:
    """The ``key: value`` (NRRD) or ``Key = Value`` (MetaImage) fields, keys lower-cased."""
    with path.open("rb") as fp:
        text = fp.read(_HEADER_LIMIT_BYTES).decode("latin-1")
    separator = ":" if fmt is VolumeFormat.NRRD else "="
    fields: dict[str, str] = {}
    for line in text.splitlines()[1 if fmt is VolumeFormat.NRRD else 0 :]:
        if fmt is VolumeFormat.NRRD and not line.strip():
            break  # the blank line that ends an NRRD header
        if line.startswith("#") or separator not in line:
            continue
        key, value = line.split(separator, 1)
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break  # the last line of a MetaImage header
    return fields
