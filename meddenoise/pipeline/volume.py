"""Read → denoise → write for researchers' volumes (NIfTI, MetaImage, NRRD), and their evaluation.

A volume file is denoised into the same kind of file, on the same grid. A DICOM series can also be
saved as a volume beside its derived series (``--also-save nifti|mha``), and two volumes on one
grid can be scored against each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import numpy as np

from meddenoise.device import resolve_device
from meddenoise.dicom import CTSeries, ProblemCode, SeriesInfo
from meddenoise.errors import OutputError
from meddenoise.inference import denoise_volume
from meddenoise.metrics import physics_summary, score_volume
from meddenoise.pipeline.evaluate import DEFAULT_PROTOCOLS
from meddenoise.pipeline.load import resolve_model, warn_unfamiliar_pixels
from meddenoise.pipeline.request import AlsoSave, RunRequest
from meddenoise.progress import ProgressFactory, no_progress
from meddenoise.report import Evaluation, ReportFiles, ReportImages, render_report
from meddenoise.volume import (
    HU_AS_STORED,
    HUConvention,
    PixelType,
    check_output_path,
    pair_volumes,
    read_volume,
    volume_format_of,
    write_series_as_volume,
    write_volume,
)

logger = logging.getLogger(__name__)

ALSO_SAVE_EXTENSIONS: dict[str, str] = {"nifti": ".nii.gz", "mha": ".mha"}


def is_volume_path(path: str | Path) -> bool:
    """Whether ``path`` names a volume file (by extension) rather than a DICOM file or folder."""
    return volume_format_of(Path(path)) is not None


def denoise_volume_path(
    *,
    input_path: str | Path,
    output_path: str | Path,
    request: RunRequest | None = None,
    convention: HUConvention = HU_AS_STORED,
    pixel_type: PixelType = "keep",
    progress: ProgressFactory = no_progress,
) -> Path:
    """Denoise a volume file into ``output_path`` (same grid; int16 HU unless float is asked for)."""
    request = request or RunRequest()
    settings, overwrite = request.settings, request.output.overwrite
    input_path, output_path = Path(input_path), Path(output_path)
    check_output_path(output_path, sources=[input_path], overwrite=overwrite)  # before any work
    device = resolve_device(settings.device)
    volume = read_volume(input_path, hu_offset=convention.offset, hu_scale=convention.scale)
    loaded = resolve_model(request.model, device=str(device))
    warn_unfamiliar_pixels(loaded, volume.spacing_mm, str(input_path))
    with progress(description=f"denoise {input_path.name}", total=volume.hu.shape[0]) as advance:
        hu = denoise_volume(volume.hu, model=loaded, settings=settings, progress=advance)
    return write_volume(hu, output_path, like=volume, pixel_type=pixel_type, overwrite=overwrite)


def also_save_paths(folder: Path, formats: Sequence[str]) -> list[Path]:
    """Where ``--also-save`` puts the volumes of the derived series in ``folder`` (beside it)."""
    unknown = [f for f in formats if f not in get_args(AlsoSave)]
    if unknown:
        raise ValueError(f"unknown --also-save {', '.join(unknown)}; valid: {', '.join(get_args(AlsoSave))}")
    return [folder.with_name(folder.name + ALSO_SAVE_EXTENSIONS[f]) for f in dict.fromkeys(formats)]


IRREGULAR_GRID = frozenset({ProblemCode.TILT, ProblemCode.UNEVEN_SPACING, ProblemCode.GAP})
"""Problems a regular volume grid would hide by misplacing slices."""


def refuse_irregular(infos: Sequence[SeriesInfo]) -> None:
    """Refuse, before any work, series that a regular volume grid would misplace (tilt, uneven steps)."""
    for info in infos:
        irregular = [str(p) for p in info.issues if p.code in IRREGULAR_GRID]
        if irregular:
            raise OutputError(
                f"series {info.series_uid} cannot be saved as a volume ({irregular[0]}); "
                "drop --also-save or resample it first"
            )


def save_series_volumes(
    series: CTSeries, *, folder: Path, formats: Sequence[str], overwrite: bool = False
) -> list[Path]:
    """Write ``series.hu`` as volumes beside the derived series ``folder``, on SimpleITK's grid."""
    if any(ref.frame_index is not None for ref in series.info.slices):
        raise OutputError(f"{folder}: --also-save supports single-frame CT series, not Enhanced CT")
    files = [ref.path for ref in series.info.slices]
    return [
        write_series_as_volume(series.hu, dicom_files_sorted=files, path=path, overwrite=overwrite)
        for path in also_save_paths(folder, formats)
    ]


def evaluate_volume_paths(
    *,
    denoised_path: str | Path,
    reference_path: str | Path,
    out_dir: str | Path,
    protocols: Sequence[str] = DEFAULT_PROTOCOLS,
    reference_convention: HUConvention = HU_AS_STORED,
) -> tuple[Evaluation, ReportFiles]:
    """Evaluate a denoised volume against a reference volume on the same grid; write the report.

    ``reference_convention`` declares the reference's values; a volume meddenoise wrote is HU.
    """
    denoised = read_volume(Path(denoised_path))
    reference = read_volume(
        Path(reference_path), hu_offset=reference_convention.offset, hu_scale=reference_convention.scale
    )
    pair = pair_volumes(denoised=denoised, reference=reference)
    normal = np.reshape(reference.direction, (3, 3))[:, 2]
    start = float(np.dot(normal, reference.origin_mm))
    positions = [start + k * reference.spacing_mm[0] for k in range(reference.hu.shape[0])]
    scores = score_volume(
        denoised=pair.denoised.hu, reference=pair.reference.hu, protocols=protocols, positions_mm=positions
    )
    context: dict[str, object] = {
        "denoised_path": str(denoised_path),
        "reference_path": str(reference_path),
        "n_slices": reference.hu.shape[0],
        "spacing_mm": list(reference.spacing_mm),
    }
    pixel_mm = (reference.spacing_mm[1], reference.spacing_mm[2])
    evaluation = Evaluation(
        images=ReportImages(
            output=pair.denoised.hu,
            reference=pair.reference.hu,
            positions_mm=tuple(positions),
            pixel_mm=pixel_mm,
        ),
        scores=scores,
        physics=physics_summary(
            input_hu=None, output_hu=pair.denoised.hu, reference_hu=pair.reference.hu, pixel_mm=pixel_mm
        ),
        context=context,
    )
    return evaluation, render_report(evaluation, out_dir=Path(out_dir))
