"""Build the datasets of a derived CT series from the source slice headers (ARCHITECTURE.md rule 5).

This module knows DICOM semantics and nothing about files or folders: ``write.py`` does the I/O.
Each derived slice is a deep copy of its source header with new identity (Series/SOP UIDs), the
same patient, study and geometry, ``ImageType = DERIVED\\SECONDARY\\AXIAL``, a DerivationDescription,
a SourceImageSequence pointing back at the source slice, and stored values recomputed from HU with
that slice's own slope and intercept. The result is always single-frame CT Image Storage in
Explicit VR Little Endian.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from meddenoise import __version__
from meddenoise.dicom.series import SeriesInfo, SliceRef
from meddenoise.errors import SeriesError

logger = logging.getLogger(__name__)

MAX_LO_CHARS = 64
MAX_ST_CHARS = 1024
IS_MAX = 2**31 - 1
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SAFE_SUFFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_LOSSY_SYNTAXES: dict[str, str] = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
}
# Image-level statistics that no longer describe the new pixels, padding ranges (the writer
# restores padding to the single PixelPaddingValue), and things tied to the source's bytes.
_STALE_KEYWORDS = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "PixelPaddingRangeLimit",
    "IconImageSequence",
    "SourceImageSequence",
    "DerivationCodeSequence",
    "DataSetTrailingPadding",
    "DigitalSignaturesSequence",
    "MACParametersSequence",
    "EncryptedAttributesSequence",
)
# Type 2 attributes of the CT Image IOD modules we copy; a source without them gets them empty.
_TYPE2_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer",
    "PositionReferenceIndicator", "KVP", "AcquisitionNumber",
)  # fmt: skip
# BodyPartExamined values of unpaired parts, for which Laterality must be absent (PS3.16 Annex L).
_UNPAIRED_BODY_PARTS = frozenset((
    "ABDOMEN", "ABDOMENPELVIS", "BLADDER", "BRAIN", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS",
    "COCCYX", "CSPINE", "HEAD", "HEADNECK", "HEART", "LIVER", "LSPINE", "NECK", "NECKCHEST",
    "PANCREAS", "PELVIS", "PROSTATE", "SACRUM", "SKULL", "SPINE", "SPLEEN", "STOMACH", "TSPINE",
    "WHOLEBODY",
))  # fmt: skip
# Purpose of reference for SourceImageSequence items (CID 7202) and for our ContributingEquipment.
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_PROCESSING_EQUIPMENT = ("109103", "DCM", "Processing Equipment")


@dataclass(frozen=True)
class DerivationCode:
    """A coded derivation (CID 7203 "Image Derivation"), e.g. ``SMOOTHING``."""

    value: str
    scheme: str
    meaning: str


SMOOTHING = DerivationCode("113087", "DCM", "Smoothing")
"""The CID 7203 code closest to denoising (CID 7203 has no "noise reduction" concept)."""


@dataclass(frozen=True)
class Derivation:
    """What a derived series is, in words and codes.

    Parameters
    ----------
    description
        DerivationDescription (at most 1024 characters), e.g.
        ``"Denoised by meddenoise 0.1.0 model unet-pu v1 (strength 1.00)"``.
    series_description_suffix
        Appended to the source SeriesDescription as ``"<description> [<suffix>]"``.
    folder_suffix
        Appended to the source SeriesInstanceUID to name the output folder; letters, digits,
        ``_`` and ``-`` only.
    series_number_offset
        Added to the source SeriesNumber.
    derivation_code
        Optional CID 7203 code written as DerivationCodeSequence (for example ``SMOOTHING``).

    Examples
    --------
    >>> d = Derivation(description="Simulated 25 % dose", series_description_suffix="25% dose",
    ...                folder_suffix="dose25")
    >>> d.series_number_offset
    1000
    """

    description: str
    series_description_suffix: str
    folder_suffix: str
    series_number_offset: int = 1000
    derivation_code: DerivationCode | None = None

    def __post_init__(self) -> None:
        if not self.description.strip() or len(self.description) > MAX_ST_CHARS:
            raise ValueError(f"description must have 1..{MAX_ST_CHARS} characters, got {self.description!r}")
        suffix = self.series_description_suffix
        if not suffix.strip() or len(suffix) + 2 > MAX_LO_CHARS or "\\" in suffix:
            raise ValueError(
                f"series_description_suffix must be 1..62 characters without '\\', got {suffix!r}"
            )
        if not _SAFE_SUFFIX_RE.match(self.folder_suffix) or len(self.folder_suffix) > MAX_LO_CHARS:
            raise ValueError(
                f"folder_suffix must match [A-Za-z0-9][A-Za-z0-9_-]*, got {self.folder_suffix!r}"
            )
        if not 0 < self.series_number_offset < IS_MAX:
            raise ValueError(f"series_number_offset must be positive, got {self.series_number_offset}")


@dataclass(frozen=True)
class DerivedIdentity:
    """The series-level values shared by every slice of one derived series."""

    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    date: str
    time: str


def is_valid_uid(text: str) -> bool:
    """True for a DICOM UID: digits and dots, components without leading zeros, 64 chars at most."""
    return bool(_UID_RE.match(text)) and len(text) <= MAX_LO_CHARS and UID(text).is_valid


def derived_series_description(*, source: str, suffix: str) -> str:
    """``"<source> [<suffix>]"`` trimmed to 64 characters by shortening the source part."""
    tail = f"[{suffix}]"
    room = MAX_LO_CHARS - len(tail) - 1
    head = source.strip()[: max(room, 0)].rstrip()
    return f"{head} {tail}" if head else tail


def derived_identity(*, source: SeriesInfo, derivation: Derivation) -> DerivedIdentity:
    """New Series UID, the kept Study/FrameOfReference UIDs, SeriesNumber and SeriesDescription."""
    first = source.slices[0].header
    now = datetime.now()
    try:
        number = int(first.get("SeriesNumber") or 0)
    except (TypeError, ValueError):
        number = 0
    number += derivation.series_number_offset
    if number > IS_MAX:
        number = derivation.series_number_offset
    return DerivedIdentity(
        series_uid=pydicom.uid.generate_uid(),
        study_uid=_kept_uid(source, source.study_uid, "StudyInstanceUID"),
        frame_of_reference_uid=_kept_uid(source, source.frame_of_reference_uid, "FrameOfReferenceUID"),
        series_number=number,
        series_description=derived_series_description(
            source=source.description or str(first.get("SeriesDescription", "") or ""),
            suffix=derivation.series_description_suffix,
        ),
        date=now.strftime("%Y%m%d"),
        time=now.strftime("%H%M%S.%f"),
    )


def _kept_uid(source: SeriesInfo, value: str, keyword: str) -> str:
    """Keep the source's UID; a source without a valid one gets a deterministic stand-in."""
    for candidate in (value, str(source.slices[0].header.get(keyword, "") or "")):
        if is_valid_uid(candidate):
            return candidate
    entropy = [keyword, *sorted(ref.sop_instance_uid for ref in source.slices)]
    stand_in = str(pydicom.uid.generate_uid(entropy_srcs=entropy))
    logger.warning("source series %r has no valid %s; using %s", source.series_uid, keyword, stand_in)
    return stand_in


def storable_range(*, bits_stored: int, pixel_representation: int) -> tuple[int, int]:
    """Smallest and largest stored value that BitsStored and PixelRepresentation allow.

    Examples
    --------
    >>> storable_range(bits_stored=12, pixel_representation=0)
    (0, 4095)
    >>> storable_range(bits_stored=16, pixel_representation=1)
    (-32768, 32767)
    """
    if pixel_representation == 1:
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2**bits_stored - 1


def hu_to_stored(
    *, hu: npt.NDArray[np.floating], header: Dataset, padding: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.integer]:
    """Stored values for one slice: ``round((hu - intercept) / slope)``, clipped to the storable range.

    Where ``padding`` is set the slice's PixelPaddingValue is written; other pixels that would
    equal it are moved one step away, so a reader does not take them for padding.
    """
    where = _describe(header)
    bits_allocated = int(header.get("BitsAllocated", 16))
    if bits_allocated not in (8, 16):
        raise SeriesError(f"{where}: cannot write BitsAllocated={bits_allocated} (only 8 or 16)")
    bits_stored = int(header.get("BitsStored", bits_allocated))
    signed = int(header.get("PixelRepresentation", 0))
    slope = float(header.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
    low, high = storable_range(bits_stored=bits_stored, pixel_representation=signed)
    stored = np.clip(np.rint((hu.astype(np.float64) - intercept) / slope), low, high)
    pad_value = header.get("PixelPaddingValue")
    if padding is not None and pad_value is not None:
        pad = _in_pixel_signedness(int(pad_value), bits=bits_allocated, signed=bool(signed))
        if not low <= pad <= high:
            raise SeriesError(f"{where}: PixelPaddingValue {pad} lies outside the storable {low}..{high}")
        stored[(stored == pad) & ~padding] = pad + 1 if pad < high else pad - 1
        stored[padding] = pad
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}").newbyteorder("<")
    return stored.astype(dtype)


def _in_pixel_signedness(value: int, *, bits: int, signed: bool) -> int:
    """Read a padding value in the pixels' own signedness (US/SS padding tags are often mixed up)."""
    pattern = value & ((1 << bits) - 1)
    return pattern - (1 << bits) if signed and pattern >= 1 << (bits - 1) else pattern


def derive_slice(
    *,
    ref: SliceRef,
    instance_number: int,
    stored: npt.NDArray[np.integer],
    identity: DerivedIdentity,
    derivation: Derivation,
) -> Dataset:
    """The derived dataset for one source slice, with pixel data and file meta, ready to write."""
    if ref.frame_index is not None:
        raise SeriesError(
            f"{ref.path}: writing a derived series from an Enhanced CT (multi-frame) source is not "
            "supported yet"
        )
    photometric = ref.header.get("PhotometricInterpretation", "MONOCHROME2")
    if photometric != "MONOCHROME2":
        raise SeriesError(f"{ref.path}: cannot derive from PhotometricInterpretation {photometric}")
    ds = copy.deepcopy(ref.header)
    _drop_stale(ds)
    sop_uid = pydicom.uid.generate_uid()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.StudyInstanceUID = identity.study_uid
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.SeriesNumber = identity.series_number
    ds.SeriesDescription = identity.series_description
    ds.InstanceNumber = instance_number
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = derivation.description
    if derivation.derivation_code is not None:
        ds.DerivationCodeSequence = Sequence([_code_item(derivation.derivation_code)])
    source_item = _source_image_item(ref)
    if source_item is not None:
        ds.SourceImageSequence = Sequence([source_item])
    for keyword in ("ContentDate", "InstanceCreationDate", "SeriesDate"):
        setattr(ds, keyword, identity.date)
    for keyword in ("ContentTime", "InstanceCreationTime", "SeriesTime"):
        setattr(ds, keyword, identity.time)
    _add_contributing_equipment(ds, identity=identity, derivation=derivation)
    _mark_lossy_history(ds)
    _fix_inherited_errors(ds)
    ds.file_meta = ct_file_meta(sop_uid)
    ds.set_pixel_data(stored, "MONOCHROME2", int(ds.get("BitsStored", 16)), generate_instance_uid=False)
    return ds


def _drop_stale(ds: Dataset) -> None:
    """Remove private tags, group lengths, stale pixel statistics and anything after the pixels."""
    ds.remove_private_tags()
    for elem in list(ds):
        if elem.tag.element == 0 or elem.tag.group >= 0x7FE0:
            del ds[elem.tag]
    for keyword in _STALE_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)


def _code_item(code: DerivationCode | tuple[str, str, str]) -> Dataset:
    value, scheme, meaning = (
        (code.value, code.scheme, code.meaning) if isinstance(code, DerivationCode) else code
    )
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _source_image_item(ref: SliceRef) -> Dataset | None:
    """SourceImageSequence item for ``ref``, falling back to its file meta for missing UIDs."""
    meta = getattr(ref.header, "file_meta", None) or FileMetaDataset()
    class_uid = ref.sop_class_uid or str(meta.get("MediaStorageSOPClassUID", "") or "")
    instance_uid = ref.sop_instance_uid or str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    if not (is_valid_uid(class_uid) and is_valid_uid(instance_uid)):
        logger.warning("%s: source slice has no valid SOP UIDs; SourceImageSequence omitted", ref.path)
        return None
    item = Dataset()
    item.ReferencedSOPClassUID = class_uid
    item.ReferencedSOPInstanceUID = instance_uid
    item.PurposeOfReferenceCodeSequence = Sequence([_code_item(_SOURCE_PURPOSE)])
    return item


def _add_contributing_equipment(ds: Dataset, *, identity: DerivedIdentity, derivation: Derivation) -> None:
    """Record meddenoise as processing equipment; Manufacturer etc. keep naming the scanner."""
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = Sequence([_code_item(_PROCESSING_EQUIPMENT)])
    item.Manufacturer = "meddenoise"
    item.SoftwareVersions = __version__
    item.ContributionDateTime = f"{identity.date}{identity.time}"
    item.ContributionDescription = derivation.description
    previous = list(ds.get("ContributingEquipmentSequence", []))
    ds.ContributingEquipmentSequence = Sequence([*previous, item])


def _mark_lossy_history(ds: Dataset) -> None:
    """Once lossy, always flagged: keep LossyImageCompression=01, add it for a lossy source syntax."""
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    if syntax in _LOSSY_SYNTAXES and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = _LOSSY_SYNTAXES[syntax]
    if ds.get("LossyImageCompression") != "01":
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in ds:
                delattr(ds, keyword)


def _fix_inherited_errors(ds: Dataset) -> None:
    """Repair common source defects that dciodvfy reports as errors, where the fix is truthful.

    Missing Type 2 attributes are added empty (empty means "unknown"), an empty Type 1C
    SpecificCharacterSet is removed (absent means the default repertoire), and a de-identified
    source that forgot its method says so.
    """
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet
    for keyword in _TYPE2_KEYWORDS:
        if keyword not in ds:
            setattr(ds, keyword, None)
    body_part = str(ds.get("BodyPartExamined", "") or "").upper()
    if "Laterality" not in ds and body_part not in _UNPAIRED_BODY_PARTS:
        ds.Laterality = None  # Type 2C: required unless the body part is known to be unpaired
    removed = ds.get("PatientIdentityRemoved") == "YES"
    if removed and not ds.get("DeidentificationMethod") and "DeidentificationMethodCodeSequence" not in ds:
        ds.DeidentificationMethod = "Not recorded by the source"


def ct_file_meta(sop_uid: str) -> FileMetaDataset:
    """File meta for an uncompressed (Explicit VR Little Endian) CT Image Storage instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    return meta


def _describe(header: Dataset) -> str:
    filename = getattr(header, "filename", None)
    return str(filename) if filename else f"slice {header.get('SOPInstanceUID', '?')}"
