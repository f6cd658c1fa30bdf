"""Image-quality metrics on HU arrays: fidelity (PSNR/SSIM/RMSE) and physics (noise, NPS, CNR, MTF).

Every result names the protocol it was measured under. This package never imports torch or monai.

* :mod:`meddenoise.metrics.fidelity`: PSNR, SSIM, RMSE under named protocols, per slice and series;
* :mod:`meddenoise.metrics.noise`: uniform ROIs, noise SD and its reduction, mean HU bias;
* :mod:`meddenoise.metrics.nps`: 2D and radial noise power spectrum, peak and mean frequency;
* :mod:`meddenoise.metrics.contrast`: CNR of low-contrast inserts;
* :mod:`meddenoise.metrics.sharpness`: ESF/LSF/MTF at a straight edge, TTF at a disc's edge;
* :mod:`meddenoise.metrics.noise_level`: a slice's noise SD estimated from the image alone;
* :mod:`meddenoise.metrics.physics`: all of the physics of an evaluation, in the same ROIs;
* :mod:`meddenoise.metrics.detectability`: a channelized Hotelling observer's d′ for low-contrast inserts.
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
from meddenoise.metrics.detectability import CHOResult, cho_detectability, detectability_by_insert
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
from meddenoise.metrics.noise_level import NoiseEstimate, estimate_noise_sd, estimate_volume_noise_sd
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
from meddenoise.metrics.physics import ImagePhysics, PhysicsSummary, physics_summary
from meddenoise.metrics.sharpness import MTFResult, circular_edge_ttf, edge_mtf, mtf_from_samples

__all__ = [
    "HU_BIAS_TARGET_HU",
    "NPS2D",
    "PROTOCOLS",
    "SSIM_SETTINGS",
    "ArrayLike",
    "BiasResult",
    "CHOResult",
    "CNREnsemble",
    "CNRResult",
    "Detrend",
    "ImagePhysics",
    "Insert",
    "MTFResult",
    "MetricProtocol",
    "NoiseEstimate",
    "NoiseResult",
    "PhysicsSummary",
    "ProtocolMode",
    "ProtocolName",
    "RadialNPS",
    "Roi",
    "RoiStats",
    "SSIMSettings",
    "SeriesScores",
    "SliceScore",
    "annulus_mask",
    "cho_detectability",
    "circular_edge_ttf",
    "cnr",
    "cnr_over_realisations",
    "detectability_by_insert",
    "detrend_rois",
    "edge_mtf",
    "estimate_noise_sd",
    "estimate_volume_noise_sd",
    "find_inserts",
    "find_uniform_rois",
    "hu_bias",
    "mtf_from_samples",
    "noise_reduction_percent",
    "noise_sd",
    "nps_2d",
    "nps_of_difference",
    "physics_summary",
    "protocol_by_name",
    "psnr",
    "radial_nps",
    "rmse",
    "score_volume",
    "ssim",
    "stack_rois",
]
