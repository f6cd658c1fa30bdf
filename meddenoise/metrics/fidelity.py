"""PSNR, SSIM and RMSE on HU arrays, always under a named metric protocol.

On the same pair of images the protocol moves PSNR by up to 20 dB, so every number computed here
names its protocol (EVALUATION.md "Metric protocols"):

* ``abdomen``: HU clipped to [-160, 240], ``data_range`` 400 HU;
* ``full``: HU clipped to [-1024, 3072], ``data_range`` 4096 HU;
* ``chest-ldct`` / ``abdomen-ldct`` / ``head-ldct`` (LDCT-Bench "anatomy"): the window C-600/W1500,
  C50/W400 or C40/W80 mapped to [0, 1], ``data_range`` 1.

All inputs are in HU; the protocol converts them. The one SSIM implementation is scikit-image's
``structural_similarity`` with the settings in :data:`SSIM_SETTINGS` (uniform 7×7 window,
K1 = 0.01, K2 = 0.03, population covariance, mean over the window-valid interior). Those settings
agree with ``monai.metrics.SSIMMetric(kernel_type="uniform", win_size=7)`` to better than 1e-5
(tests/metrics/test_fidelity.py proves it); scikit-image's default sample covariance would differ from MONAI
by up to 2e-3 on noisy full-range CT. PSNR and RMSE come from one mean squared error.

This module never imports torch or monai.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from skimage.metrics import structural_similarity

from meddenoise.windowing import WINDOWS, DisplayWindow

logger = logging.getLogger(__name__)

ProtocolName = Literal["abdomen", "full", "chest-ldct", "abdomen-ldct", "head-ldct"]
ProtocolMode = Literal["clip_hu", "unit"]
ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class SSIMSettings:
    """The SSIM settings every protocol uses (passed to scikit-image's ``structural_similarity``)."""

    win_size: int = 7
    gaussian_weights: bool = False
    use_sample_covariance: bool = False
    k1: float = 0.01
    k2: float = 0.03

    def describe(self) -> str:
        """One line naming the SSIM settings."""
        kernel = "gaussian (sigma 1.5)" if self.gaussian_weights else "uniform"
        covariance = "sample" if self.use_sample_covariance else "population"
        window = f"{kernel} {self.win_size}x{self.win_size} window"
        constants = f"K1={self.k1}, K2={self.k2}"
        return (
            f"SSIM: scikit-image structural_similarity per 2D slice, {window}, {constants}, "
            f"{covariance} covariance, mean over the valid interior"
        )


SSIM_SETTINGS = SSIMSettings()


@dataclass(frozen=True)
class MetricProtocol:
    """How HU become metric values: a display window, a mode and the ``data_range``.

    ``mode="clip_hu"`` keeps HU and clips them to the window; ``mode="unit"`` maps the window to
    [0, 1]. ``data_range`` is given in the same units as the prepared values.
    """

    id: str
    window: DisplayWindow
    mode: ProtocolMode
    data_range: float
    ssim_settings: SSIMSettings = SSIM_SETTINGS

    def __post_init__(self) -> None:
        if self.mode not in get_args(ProtocolMode):
            valid = ", ".join(get_args(ProtocolMode))
            raise ValueError(f"unknown protocol mode {self.mode!r}; valid modes: {valid}")
        if not self.data_range > 0:
            raise ValueError(f"protocol {self.id!r} needs data_range > 0, got {self.data_range}")

    @property
    def rmse_unit(self) -> str:
        """The unit of RMSE under this protocol: ``"HU"`` or ``"unit"`` ([0, 1] window units)."""
        return "HU" if self.mode == "clip_hu" else "unit"

    def prepare(self, hu: ArrayLike) -> npt.NDArray[np.float64]:
        """HU → the values the metrics compare (clipped HU, or the window mapped to [0, 1])."""
        if self.mode == "clip_hu":
            return self.window.clip_hu(np.asarray(hu, dtype=np.float64))
        return self.window.to_unit(np.asarray(hu, dtype=np.float64))

    def describe(self) -> str:
        """One human line, e.g. ``"abdomen: HU clipped to [-160, 240], data_range=400 HU"``."""
        lower, upper = _fmt(self.window.lower_hu), _fmt(self.window.upper_hu)
        if self.mode == "clip_hu":
            return f"{self.id}: HU clipped to [{lower}, {upper}], data_range={_fmt(self.data_range)} HU"
        return (
            f"{self.id}: window C{_fmt(self.window.center_hu)}/W{_fmt(self.window.width_hu)} "
            f"([{lower}, {upper}] HU) mapped to [0, 1], data_range={_fmt(self.data_range)}"
        )

    def describe_full(self) -> str:
        """``describe()`` plus the SSIM settings, for reports."""
        return f"{self.describe()}; {self.ssim_settings.describe()}"


def _fmt(value: float) -> str:
    return f"{value:g}"


PROTOCOLS: dict[str, MetricProtocol] = {
    "abdomen": MetricProtocol("abdomen", WINDOWS["abdomen"], "clip_hu", 400.0),
    "full": MetricProtocol("full", WINDOWS["full"], "clip_hu", 4096.0),
    "chest-ldct": MetricProtocol("chest-ldct", WINDOWS["chest-ldct"], "unit", 1.0),
    "abdomen-ldct": MetricProtocol("abdomen-ldct", WINDOWS["abdomen-ldct"], "unit", 1.0),
    "head-ldct": MetricProtocol("head-ldct", WINDOWS["head-ldct"], "unit", 1.0),
}


def protocol_by_name(name: str) -> MetricProtocol:
    """Look up a metric protocol, naming the valid ones (and a close match) when ``name`` is unknown.

    Examples
    --------
    >>> protocol_by_name("abdomen").describe()
    'abdomen: HU clipped to [-160, 240], data_range=400 HU'
    """
    try:
        return PROTOCOLS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PROTOCOLS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        valid = ", ".join(PROTOCOLS)
        raise ValueError(f"unknown metric protocol {name!r}; valid protocols: {valid}{hint}") from None


def _prepared_pair(
    denoised: ArrayLike, reference: ArrayLike, protocol: MetricProtocol
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    den = np.asarray(denoised, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if den.shape != ref.shape:
        raise ValueError(f"denoised shape {den.shape} differs from reference shape {ref.shape}")
    for name, array in (("denoised", den), ("reference", ref)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values; metrics need finite HU")
    return protocol.prepare(den), protocol.prepare(ref)


def _mse(den: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> float:
    return float(np.mean(np.square(den - ref)))


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _ssim_prepared(
    den: npt.NDArray[np.float64], ref: npt.NDArray[np.float64], protocol: MetricProtocol
) -> float:
    if den.ndim != 2:
        raise ValueError(f"SSIM is computed per 2D slice; got an array of shape {den.shape}")
    s = protocol.ssim_settings
    return float(
        structural_similarity(
            ref,
            den,
            data_range=protocol.data_range,
            win_size=s.win_size,
            gaussian_weights=s.gaussian_weights,
            use_sample_covariance=s.use_sample_covariance,
            K1=s.k1,
            K2=s.k2,
        )
    )


def psnr(*, denoised: ArrayLike, reference: ArrayLike, protocol: MetricProtocol) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range² / MSE)``, under ``protocol``.

    Identical images (MSE = 0) give ``math.inf``: PSNR is infinite by definition. The report
    writer serialises it as JSON ``null`` with ``"psnr_infinite": true`` and as ``inf`` in CSV.

    Raises
    ------
    ValueError
        If the shapes differ or an input holds NaN or infinite values.

    Examples
    --------
    >>> ref = np.zeros((8, 8)); den = ref + 4.0
    >>> round(psnr(denoised=den, reference=ref, protocol=PROTOCOLS["abdomen"]), 2)
    40.0
    """
    den, ref = _prepared_pair(denoised, reference, protocol)
    return _psnr_from_mse(_mse(den, ref), protocol.data_range)


def rmse(*, denoised: ArrayLike, reference: ArrayLike, protocol: MetricProtocol) -> float:
    """Root mean squared error under ``protocol``: in HU for ``clip_hu`` protocols, else in [0, 1] units."""
    den, ref = _prepared_pair(denoised, reference, protocol)
    return math.sqrt(_mse(den, ref))


def ssim(*, denoised: ArrayLike, reference: ArrayLike, protocol: MetricProtocol) -> float:
    """Structural similarity of one 2D slice under ``protocol`` (settings: :data:`SSIM_SETTINGS`).

    Raises
    ------
    ValueError
        If the shapes differ, an input is not 2D or holds NaN or infinite values.

    Examples
    --------
    >>> ref = np.arange(64.0).reshape(8, 8)
    >>> ssim(denoised=ref, reference=ref, protocol=PROTOCOLS["full"])
    1.0
    """
    den, ref = _prepared_pair(denoised, reference, protocol)
    return _ssim_prepared(den, ref, protocol)


@dataclass(frozen=True)
class SliceScore:
    """The metrics of one slice under one protocol; ``psnr`` is ``inf`` for identical slices."""

    index: int
    position_mm: float | None
    protocol: str
    psnr: float
    ssim: float
    rmse: float


@dataclass(frozen=True)
class SeriesScores:
    """Per-slice scores of a series under one protocol, and their means.

    ``mean_psnr`` is the mean of the *finite* per-slice PSNR values; ``n_infinite_psnr`` counts the
    identical slices left out of it (``mean_psnr`` is ``inf`` when every slice is identical).
    ``mean_ssim`` and ``mean_rmse`` average all slices.
    """

    protocol: MetricProtocol
    per_slice: tuple[SliceScore, ...]
    mean_psnr: float
    mean_ssim: float
    mean_rmse: float
    n_infinite_psnr: int = 0
    aggregation: str = "mean of per-slice values (PSNR: mean over finite slices)"

    @property
    def n_slices(self) -> int:
        """How many slices were scored."""
        return len(self.per_slice)


def _series_from_slices(protocol: MetricProtocol, slices: tuple[SliceScore, ...]) -> SeriesScores:
    finite = [s.psnr for s in slices if math.isfinite(s.psnr)]
    return SeriesScores(
        protocol=protocol,
        per_slice=slices,
        mean_psnr=float(np.mean(finite)) if finite else math.inf,
        mean_ssim=float(np.mean([s.ssim for s in slices])),
        mean_rmse=float(np.mean([s.rmse for s in slices])),
        n_infinite_psnr=len(slices) - len(finite),
    )


def score_volume(
    *,
    denoised: ArrayLike,
    reference: ArrayLike,
    protocols: Sequence[str] = ("abdomen", "full"),
    positions_mm: Sequence[float] | None = None,
) -> dict[str, SeriesScores]:
    """Score a volume slice by slice under each protocol.

    Parameters
    ----------
    denoised, reference
        HU volumes of shape (slices, rows, cols).
    protocols
        Protocol ids (see :data:`PROTOCOLS`).
    positions_mm
        Optional slice positions along the slice normal, one per slice, copied into each score.

    Returns
    -------
    dict[str, SeriesScores]
        Keyed by protocol id, in the order given.

    Examples
    --------
    >>> ref = np.zeros((2, 16, 16)); den = ref + 4.0
    >>> scores = score_volume(denoised=den, reference=ref, protocols=["abdomen"])
    >>> round(scores["abdomen"].mean_psnr, 2), scores["abdomen"].mean_rmse
    (40.0, 4.0)
    """
    chosen = [protocol_by_name(name) for name in protocols]
    den = np.asarray(denoised, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if den.shape != ref.shape:
        raise ValueError(f"denoised shape {den.shape} differs from reference shape {ref.shape}")
    if den.ndim != 3:
        raise ValueError(f"score_volume needs (slices, rows, cols) volumes; got shape {den.shape}")
    if positions_mm is not None and len(positions_mm) != den.shape[0]:
        raise ValueError(f"positions_mm has {len(positions_mm)} values for {den.shape[0]} slices")
    per_protocol: dict[str, list[SliceScore]] = {p.id: [] for p in chosen}
    for index in range(den.shape[0]):
        position = None if positions_mm is None else float(positions_mm[index])
        for protocol in chosen:
            d, r = _prepared_pair(den[index], ref[index], protocol)
            mse = _mse(d, r)
            per_protocol[protocol.id].append(
                SliceScore(
                    index=index,
                    position_mm=position,
                    protocol=protocol.id,
                    psnr=_psnr_from_mse(mse, protocol.data_range),
                    ssim=_ssim_prepared(d, r, protocol),
                    rmse=math.sqrt(mse),
                )
            )
    logger.debug("scored %d slices under %s", den.shape[0], ", ".join(per_protocol))
    return {p.id: _series_from_slices(p, tuple(per_protocol[p.id])) for p in chosen}
