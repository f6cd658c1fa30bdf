"""Image-quality metrics on HU arrays: fidelity (PSNR/SSIM/RMSE) and physics (noise, NPS, CNR, MTF).

Every result names the protocol it was measured under. This package never imports torch or monai.

* :mod:`meddenoise.metrics.fidelity`: PSNR, SSIM, RMSE under named protocols, per slice and series;
* :mod:`meddenoise.metrics.noise`: uniform ROIs, noise SD and its reduction, mean HU bias;
* :mod:`meddenoise.metrics.nps`: 2D and radial noise power spectrum, peak and mean frequency;
* :mod:`meddenoise.metrics.contrast`: CNR of low-contrast inserts;
* :mod:`meddenoise.metrics.sharpness`: ESF/LSF/MTF at a straight edge, TTF at a disc's edge.
"""

from meddenoise.metrics.contrast import (
    CNREnsemble,
    CNRResult,
    Insert,
    annulus_mask,
    cnr,
    cnr_over_realisations,
    find_inserts,
)
from meddenoise.metrics.fidelity import (
    PROTOCOLS,
    SSIM_SETTINGS,
    ArrayLike,
    MetricProtocol,
    ProtocolMode,
    ProtocolName,
    SeriesScores,
    SliceScore,
    SSIMSettings,
    protocol_by_name,
    psnr,
    rmse,
    score_volume,
    ssim,
)
from meddenoise.metrics.noise import (
    HU_BIAS_TARGET_HU,
    BiasResult,
    NoiseResult,
    Roi,
    RoiStats,
    find_uniform_rois,
    hu_bias,
    noise_reduction_percent,
    noise_sd,
)
from meddenoise.metrics.nps import (
    NPS2D,
    Detrend,
    RadialNPS,
    detrend_rois,
    nps_2d,
    nps_of_difference,
    radial_nps,
    stack_rois,
)
from meddenoise.metrics.sharpness import MTFResult, circular_edge_ttf, edge_mtf, mtf_from_samples

__all__ = [
    "HU_BIAS_TARGET_HU",
    "NPS2D",
    "PROTOCOLS",
    "SSIM_SETTINGS",
    "ArrayLike",
    "BiasResult",
    "CNREnsemble",
    "CNRResult",
    "Detrend",
    "Insert",
    "MTFResult",
    "MetricProtocol",
    "NoiseResult",
    "ProtocolMode",
    "ProtocolName",
    "RadialNPS",
    "Roi",
    "RoiStats",
    "SSIMSettings",
    "SeriesScores",
    "SliceScore",
    "annulus_mask",
    "circular_edge_ttf",
    "cnr",
    "cnr_over_realisations",
    "detrend_rois",
    "edge_mtf",
    "find_inserts",
    "find_uniform_rois",
    "hu_bias",
    "mtf_from_samples",
    "noise_reduction_percent",
    "noise_sd",
    "nps_2d",
    "nps_of_difference",
    "protocol_by_name",
    "psnr",
    "radial_nps",
    "rmse",
    "score_volume",
    "ssim",
    "stack_rois",
]
