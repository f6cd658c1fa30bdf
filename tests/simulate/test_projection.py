"""Fan-beam geometry, forward projection and FBP against closed-form results."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from meddenoise.errors import DeviceError
from meddenoise.simulate import SIEMENS_DEFINITION, FanBeamGeometry, fbp, forward_project
from meddenoise.simulate.fbp import backproject_folded, filter_sinogram
from meddenoise.simulate.projector import project_folded

MU = 0.02  # 1/mm, about water
# a small scanner: same physics, far fewer rays than the default, so tests stay fast
SMALL = FanBeamGeometry(n_detectors=256, n_views=256, fov_mm=300.0, detector_offset=0.5)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def disc(
    n: int, pixel_mm: float, radius_mm: float, centre_mm: tuple[float, float] = (0.0, 0.0)
) -> torch.Tensor:
    """A disc of value 1 with anti-aliased edges (4x4 supersampling), ``[n, n]``; centre is (x, y)."""
    fine = (torch.arange(4 * n, dtype=torch.float64) - (4 * n - 1) / 2) * pixel_mm / 4
    yy, xx = torch.meshgrid(fine, fine, indexing="ij")
    inside = ((xx - centre_mm[0]) ** 2 + (yy - centre_mm[1]) ** 2 < radius_mm**2).double()
    return inside.reshape(n, 4, n, 4).mean(dim=(1, 3)).float()


def test_default_geometry_is_a_siemens_definition_whose_fan_covers_the_fov() -> None:
    g = SIEMENS_DEFINITION
    assert (g.source_to_isocentre_mm, g.source_to_detector_mm, g.n_detectors, g.n_views) == (
        595.0,
        1085.6,
        736,
        1152,
    )
    half_fan = 0.5 * g.n_detectors * g.fan_spacing_rad
    assert g.source_to_isocentre_mm * math.sin(half_fan) == pytest.approx(250.0)
    assert g.detector_spacing_mm == pytest.approx(1.28, abs=0.01)  # the Definition's pitch is ~1.29 mm
    assert g.with_views(576).n_views == 576 and g.with_views(576).fan_spacing_rad == g.fan_spacing_rad


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fov_mm": 1300.0}, "fov_mm"),
        ({"source_to_detector_mm": 500.0}, "source_to_detector_mm"),
        ({"n_views": 1}, "2 views"),
    ],
)
def test_geometry_rejects_impossible_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FanBeamGeometry(**kwargs)  # type: ignore[arg-type]


def test_central_ray_through_a_disc_is_its_diameter_times_mu() -> None:
    radius = 80.0
    sino = forward_project(disc(128, 2.0, radius) * MU, pixel_mm=(2.0, 2.0), geometry=SMALL)
    central = sino[0, :, SMALL.n_detectors // 2]  # offset 0.5 puts channel n/2 on the axis
    assert central.numpy() == pytest.approx(2 * radius * MU, rel=0.01)
    # every ray: the chord 2*sqrt(r^2 - d^2) at distance d = SOD*sin(gamma) from the centre
    distance = SMALL.source_to_isocentre_mm * torch.sin(SMALL.fan_angles())
    inner = distance.abs() < 0.9 * radius
    chord = 2 * torch.sqrt(radius**2 - distance[inner] ** 2) * MU
    assert torch.allclose(sino[0, :, inner], chord.expand(SMALL.n_views, -1), rtol=0.01, atol=2e-3)


def test_off_centre_disc_projects_to_the_predicted_channel() -> None:
    x0, y0 = 60.0, -40.0  # mm, image x along columns, y along rows
    sino = forward_project(disc(128, 2.0, 6.0, (x0, y0)), pixel_mm=(2.0, 2.0), geometry=SMALL)[0]
    channels = torch.arange(SMALL.n_detectors, dtype=torch.float32)
    for view in (0, 37, 100, 201):
        beta = float(SMALL.view_angles()[view])
        along = SMALL.source_to_isocentre_mm - (x0 * math.cos(beta) + y0 * math.sin(beta))
        gamma = math.atan2(x0 * math.sin(beta) - y0 * math.cos(beta), along)
        expected = gamma / SMALL.fan_spacing_rad + SMALL.detector_centre
        centroid = float((sino[view] * channels).sum() / sino[view].sum())
        assert centroid == pytest.approx(expected, abs=0.3)


def test_rectangular_pixels_and_images_project_like_square_ones() -> None:
    square = forward_project(disc(128, 2.0, 50.0, (20.0, 10.0)), pixel_mm=(2.0, 2.0), geometry=SMALL)
    # the same object on a 64-row grid of 4 mm rows: no quarter-turn symmetry path
    tall = disc(128, 2.0, 50.0, (20.0, 10.0)).reshape(64, 2, 128).mean(dim=1)
    rect = forward_project(tall, pixel_mm=(4.0, 2.0), geometry=SMALL)
    # same mass along every view; rays differ only where the 4 mm rows blur the edge
    assert torch.allclose(rect.sum(dim=-1), square.sum(dim=-1), rtol=1e-3)
    assert float((rect - square).abs().mean()) < 0.005 * float(square.max())


def test_quarter_turn_symmetry_matches_the_direct_computation() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 48, 48) * MU
    g = FanBeamGeometry(n_detectors=96, n_views=32, fov_mm=150.0)
    direct = project_folded(images, pixel_mm=(3.0, 3.0), geometry=g, step_px=0.5, folds=1)
    folded = project_folded(images, pixel_mm=(3.0, 3.0), geometry=g, step_px=0.5, folds=4)
    assert torch.allclose(direct, folded, atol=1e-3 * float(direct.max()))
    filtered = filter_sinogram(direct, geometry=g, filter="hann")
    back_direct = backproject_folded(filtered, pixel_mm=(3.0, 3.0), shape=(48, 48), geometry=g, folds=1)
    back_folded = backproject_folded(filtered, pixel_mm=(3.0, 3.0), shape=(48, 48), geometry=g, folds=4)
    assert torch.allclose(back_direct, back_folded, atol=1e-4 * float(back_direct.abs().max()))


def test_forward_project_accepts_numpy_and_one_image_and_checks_cuda() -> None:
    sino = forward_project(np.zeros((32, 32), np.float32), pixel_mm=(4.0, 4.0), geometry=SMALL, device="cpu")
    assert sino.shape == (1, SMALL.n_views, SMALL.n_detectors) and sino.dtype == torch.float32
    with pytest.raises(ValueError, match="step_px"):
        forward_project(np.zeros((8, 8), np.float32), pixel_mm=(1.0, 1.0), step_px=0.0)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            forward_project(np.zeros((8, 8), np.float32), pixel_mm=(1.0, 1.0), device="cuda")


@pytest.mark.parametrize("window", ["ram-lak", "shepp-logan", "cosine", "hann"])
def test_fbp_of_a_projected_phantom_recovers_mu(window: str) -> None:
    # water disc with a denser off-centre insert
    phantom = disc(128, 2.0, 100.0) * MU + disc(128, 2.0, 20.0, (-45.0, 30.0)) * MU
    sino = forward_project(phantom, pixel_mm=(2.0, 2.0), geometry=SMALL)
    rec = fbp(sino, pixel_mm=(2.0, 2.0), shape=(128, 128), geometry=SMALL, filter=window)[0]  # type: ignore[arg-type]
    background = rec[64 - 12 : 64 + 12, 64 + 5 : 64 + 30]  # x in (10, 60) mm, y around 0
    insert = rec[64 + 9 : 64 + 21, 64 - 29 : 64 - 17]  # around (-45, 30) mm, radius < 12 mm
    assert float(background.mean()) == pytest.approx(MU, rel=0.01)
    assert float(insert.mean()) == pytest.approx(2 * MU, rel=0.01)
    assert float(rec[60:68, :8].abs().mean()) < 0.01 * MU  # air inside the field of view stays air


def test_fbp_works_on_a_coarse_default_scanner_image() -> None:
    g = SIEMENS_DEFINITION.with_views(288)
    sino = forward_project(disc(100, 4.0, 120.0) * MU, pixel_mm=(4.0, 4.0), geometry=g)
    rec = fbp(sino[0], pixel_mm=(4.0, 4.0), shape=(100, 100), geometry=g, filter="hann")
    assert float(rec[0, 35:65, 35:65].mean()) == pytest.approx(MU, rel=0.01)


def test_fbp_rejects_unknown_filters_and_mismatched_sinograms() -> None:
    sino = torch.zeros(1, SMALL.n_views, SMALL.n_detectors)
    with pytest.raises(ValueError, match="valid filters: ram-lak, shepp-logan, cosine, hann"):
        fbp(sino, pixel_mm=(1.0, 1.0), shape=(8, 8), geometry=SMALL, filter="hamming")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not match geometry"):
        fbp(sino[:, :10], pixel_mm=(1.0, 1.0), shape=(8, 8), geometry=SMALL)


def test_forward_projection_matches_astra_line_fanflat() -> None:
    astra = pytest.importorskip("astra")
    g = FanBeamGeometry(
        source_to_isocentre_mm=300.0, source_to_detector_mm=500.0, n_detectors=256, n_views=64, fov_mm=160.0
    )
    c = np.arange(128) - 63.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    blobs = np.exp(-((xx - 20) ** 2 + (yy + 10) ** 2) / 288.0) + 0.5 * np.exp(
        -((xx + 25) ** 2 + (yy - 30) ** 2) / 72.0
    )
    image = (blobs * MU).astype(np.float32)
    ours = forward_project(image, pixel_mm=(1.0, 1.0), geometry=g)[0].numpy()
    sod, sdd, pitch = (
        g.source_to_isocentre_mm,
        g.source_to_detector_mm,
        g.source_to_detector_mm * g.fan_spacing_rad,
    )
    # astra's y axis points up (against our rows); a flat detector with our central pitch
    vectors = [
        [
            sod * math.cos(b),
            -sod * math.sin(b),
            -(sdd - sod) * math.cos(b),
            (sdd - sod) * math.sin(b),
            pitch * math.sin(b),
            pitch * math.cos(b),
        ]
        for b in g.view_angles().double().numpy()
    ]
    proj_geom = astra.create_proj_geom("fanflat_vec", 256, np.array(vectors))
    projector = astra.create_projector("line_fanflat", proj_geom, astra.create_vol_geom(128, 128))
    sino_id, theirs = astra.create_sino(image, projector)
    astra.data2d.delete(sino_id)
    astra.projector.delete(projector)
    # our equiangular channels, read at the flat detector's fan angles
    channel = np.arctan((np.arange(256) - 127.5) * pitch / sdd) / g.fan_spacing_rad + g.detector_centre
    resampled = np.stack([np.interp(channel, np.arange(g.n_detectors), row) for row in ours])
    difference = np.abs(resampled - theirs)
    assert difference.max() < 0.03 * theirs.max()
    assert np.sqrt(np.mean(difference**2)) < 0.003 * theirs.max()
