"""What a run is asked to do, built once from flags or a config and used by every face.

A :class:`RunRequest` names the model, the :class:`InferenceSettings` and the :class:`OutputPolicy`.
``denoise``, ``batch``, the DICOM node, the demo and the Python API all build one, so every knob
reaches every face, and every option is validated here, before any output is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from meddenoise.inference import InferenceSettings
from meddenoise.models import LoadedModel
from meddenoise.pipeline.evaluate import ReportOptions

AlsoSave = Literal["nifti", "mha"]
"""Volume formats a denoised DICOM series can also be saved as."""


@dataclass(frozen=True)
class OutputPolicy:
    """What a run writes besides each derived series, and whether it may replace one.

    Parameters
    ----------
    overwrite
        Replace an existing derived series (atomically); otherwise an existing one is an error.
    also_save
        Also save each derived series as a volume beside it: ``"nifti"`` and/or ``"mha"``.
    report
        Write one report folder per derived series, ``<series folder>.report/``: the denoised series
        against its low-dose input, and against the reference when one is given.
    report_options
        Protocols, PHI, figure slices and the DICOM (Encapsulated PDF) copy of each report.
    allow_gaps
        Denoise a series with missing slices; the derived series records the gaps.
    """

    overwrite: bool = False
    also_save: tuple[AlsoSave, ...] = ()
    report: bool = False
    report_options: ReportOptions = field(default_factory=ReportOptions)
    allow_gaps: bool = False

    def __post_init__(self) -> None:
        valid = get_args(AlsoSave)
        unknown = [f for f in self.also_save if f not in valid]
        if unknown:
            raise ValueError(f"unknown --also-save {', '.join(unknown)}; valid: {', '.join(valid)}")
        object.__setattr__(self, "also_save", tuple(dict.fromkeys(self.also_save)))
        if self.report_options.dicom_report and not self.report:
            object.__setattr__(self, "report", True)  # the PDF is a rendering of the report


@dataclass(frozen=True)
class RunRequest:
    """One denoising run: which model, how it runs, and what is written.

    ``model`` is a shipped model name, a checkpoint path or a loaded model (None: the shipped default).
    ``reference`` is a full-dose series scored against every output (implies a report).
    ``series_uids`` limits the run to those series (empty: every CT series found).

    Examples
    --------
    >>> policy = OutputPolicy(also_save=("mha",))
    >>> request = RunRequest(settings=InferenceSettings(strength=0.8), output=policy)
    >>> request.settings.strength, request.output.also_save
    (0.8, ('mha',))
    """

    model: str | Path | LoadedModel | None = None
    settings: InferenceSettings = field(default_factory=InferenceSettings)
    output: OutputPolicy = field(default_factory=OutputPolicy)
    series_uids: tuple[str, ...] = ()
    reference: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "series_uids", tuple(self.series_uids))
        if self.reference is not None and not self.output.report:
            object.__setattr__(self, "output", replace(self.output, report=True))
