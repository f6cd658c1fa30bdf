"""read_volume / write_volume: round trips for every format, and every bad input refused in one line."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from meddenoise.errors import OutputError, SeriesError
from meddenoise.volume.formats import VolumeFormat, volume_format_of
from meddenoise.volume.image import from_sitk, to_sitk
from meddenoise.volume.io import read_volume, write_volume
from tests.volume.synthetic import ct_volume, phantom_hu

EXACT_FORMATS = ("mha", "mhd")
"""MetaImage writes spacing, origin and direction with 17 significant digits: bit-exact."""


def _geometry_tolerance(extension: str) -> float:
    if extension in EXACT_FORMATS:
        return 0.0
    if extension == "nrrd":
        return 1e-12  # NRRD stores spacing × direction vectors; dividing back costs an ulp
    return 1e-6  # NIfTI holds pixdim, qform and sform as float32


@pytest.mark.parametrize("extension", [f.value for f in VolumeFormat])
def test_round_trip_keeps_geometry_and_integer_hu(tmp_path: Path, extension: str) -> None:
    volume = ct_volume()
    written = write_volume(volume, tmp_path / f"ct.{extension}")
    back = read_volume(written)
    tolerance = _geometry_tolerance(extension)
    assert back.hu.shape == volume.hu.shape
    for got, want in ((back.spacing_mm, volume.spacing_mm), (back.origin_mm, volume.origin_mm)):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=0)
    np.testing.assert_allclose(back.direction, volume.direction, rtol=0, atol=tolerance)
    assert back.pixel_id == "int16"
    np.testing.assert_array_equal(back.hu, np.rint(volume.hu))
    assert back.source == written


def test_round_trip_is_bit_exact_for_metaimage(tmp_path: Path) -> None:
    volume = ct_volume()
    back = read_volume(write_volume(volume, tmp_path / "ct.mha"))
    assert (back.spacing_mm, back.origin_mm, back.direction) == (
        volume.spacing_mm,
        volume.origin_mm,
        volume.direction,
    )


def test_nifti_keeps_spacing_to_float32(tmp_path: Path) -> None:
    back = read_volume(write_volume(ct_volume(), tmp_path / "ct.nii.gz"))
    assert back.spacing_mm == tuple(float(np.float32(v)) for v in ct_volume().spacing_mm)


def test_float32_on_request_keeps_fractions(tmp_path: Path) -> None:
    volume = ct_volume()
    back = read_volume(write_volume(volume, tmp_path / "ct.nrrd", pixel_type="float32"))
    assert back.pixel_id == "float32"
    np.testing.assert_array_equal(back.hu, volume.hu)


def test_keep_writes_float_for_a_float_source_and_int16_for_integer(tmp_path: Path) -> None:
    as_float = read_volume(write_volume(ct_volume(pixel_id="float32"), tmp_path / "f.mha"))
    as_uint = read_volume(write_volume(ct_volume(pixel_id="uint16"), tmp_path / "u.mha"))
    assert (as_float.pixel_id, as_uint.pixel_id) == ("float32", "int16")


def test_int16_rounds_and_clips(tmp_path: Path) -> None:
    hu = phantom_hu()
    hu[0, 0, :3] = [40000.0, -40000.0, 12.5]
    back = read_volume(write_volume(ct_volume(hu), tmp_path / "ct.nii"))
    assert back.hu[0, 0, :3].tolist() == [32767.0, -32768.0, 12.0]  # rint: half to even


def test_an_array_is_written_on_the_grid_of_like(tmp_path: Path) -> None:
    source = ct_volume(source=tmp_path / "in.mha")
    denoised = source.hu * 0.5
    back = read_volume(write_volume(denoised, tmp_path / "out.mha", like=source))
    assert (back.spacing_mm, back.origin_mm, back.direction) == (
        source.spacing_mm,
        source.origin_mm,
        source.direction,
    )
    np.testing.assert_array_equal(back.hu, np.rint(denoised))


def test_mhd_data_file_sits_beside_its_header_and_no_temporary_is_left(tmp_path: Path) -> None:
    write_volume(ct_volume(), tmp_path / "ct.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.mhd", "ct.raw"]
    header = (tmp_path / "ct.mhd").read_text()
    assert "ElementDataFile = ct.raw" in header


def test_sitk_image_round_trip_keeps_numpy_and_sitk_orders_apart() -> None:
    volume = ct_volume()
    image = to_sitk(volume)
    assert image.GetSize() == (20, 24, 4)
    assert image.GetSpacing() == (0.8, 0.7, 2.5)
    assert image.GetOrigin() == volume.origin_mm
    index = (3, 5, 2)  # (x, y, z)
    assert image.GetPixel(index) == volume.hu[2, 5, 3]
    back = from_sitk(image)
    assert (back.spacing_mm, back.origin_mm, back.direction) == (
        volume.spacing_mm,
        volume.origin_mm,
        volume.direction,
    )
    assert back.pixel_id == "float32"
    np.testing.assert_array_equal(back.hu, volume.hu)
    point = image.TransformIndexToPhysicalPoint(index)
    matrix = np.asarray(volume.direction).reshape(3, 3)
    expected = np.asarray(volume.origin_mm) + matrix @ (np.asarray(index) * np.asarray(image.GetSpacing()))
    np.testing.assert_allclose(point, expected, atol=1e-9)


def test_a_2d_image_is_a_volume_of_one_slice(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(phantom_hu((1, 16, 12))[0].astype(np.int16))
    image.SetSpacing((0.5, 0.6))
    image.SetOrigin((-3.0, 4.0))
    sitk.WriteImage(image, str(tmp_path / "slice.mha"))
    volume = read_volume(tmp_path / "slice.mha")
    assert volume.hu.shape == (1, 16, 12)
    assert volume.spacing_mm == (1.0, 0.6, 0.5)
    assert volume.origin_mm == (-3.0, 4.0, 0.0)


# --- bad input ---------------------------------------------------------------------------------


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "ct.foo"
    path.write_bytes(b"x")
    with pytest.raises(
        SeriesError, match=r"ct\.foo: unsupported volume extension '\.foo'; supported: \.nii, "
    ):
        read_volume(path)
    assert volume_format_of(tmp_path / "ct.nii.gz") is VolumeFormat.NIFTI_GZ
    assert volume_format_of(tmp_path / "ct.gz") is None


@pytest.mark.parametrize("extension", ["nrrd", "mha", "nii"])
def test_4d_volume_is_refused(tmp_path: Path, extension: str) -> None:
    frame = sitk.GetImageFromArray(phantom_hu().astype(np.int16))
    path = tmp_path / f"4d.{extension}"
    sitk.WriteImage(sitk.JoinSeries([frame, frame]), str(path))
    with pytest.raises(SeriesError, match=r"4d\.\w+: a 4D image \(20×24×4×2\); a CT volume is 3D"):
        read_volume(path)


def test_4d_volume_with_one_time_point_is_read_as_3d(tmp_path: Path) -> None:
    frame = sitk.GetImageFromArray(phantom_hu().astype(np.int16))
    frame.SetSpacing((0.8, 0.7, 2.5))
    sitk.WriteImage(sitk.JoinSeries([frame]), str(tmp_path / "t1.nrrd"))
    volume = read_volume(tmp_path / "t1.nrrd")
    assert volume.hu.shape == (4, 24, 20)
    assert volume.spacing_mm == (2.5, 0.7, 0.8)


@pytest.mark.parametrize("extension", ["nrrd", "mha", "nii.gz"])
def test_rgb_volume_is_refused(tmp_path: Path, extension: str) -> None:
    rgb = sitk.GetImageFromArray(np.zeros((4, 6, 5, 3), np.uint8), isVector=True)
    path = tmp_path / f"rgb.{extension}"
    sitk.WriteImage(rgb, str(path))
    with pytest.raises(SeriesError, match=r"rgb\.[\w.]+: 3 components per pixel \(RGB or vector\)"):
        read_volume(path)


def _stored_bytes() -> bytes:
    return np.rint(phantom_hu()).astype("<i2").tobytes()


def test_nrrd_without_spacing_is_refused(tmp_path: Path) -> None:
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 20 24 4\nencoding: raw\nendian: little\n\n"
    path = tmp_path / "nospacing.nrrd"
    path.write_bytes(header + _stored_bytes())
    with pytest.raises(SeriesError, match=r"nospacing\.nrrd: the file stores no voxel spacing"):
        read_volume(path)
    path.write_bytes(header.replace(b"\n\n", b"\nspacings: 0.8 0.7 2.5\n\n") + _stored_bytes())
    assert read_volume(path).spacing_mm == (2.5, 0.7, 0.8)


def test_metaimage_without_spacing_is_refused(tmp_path: Path) -> None:
    header = b"ObjectType = Image\nNDims = 3\nDimSize = 20 24 4\nElementType = MET_SHORT\n"
    path = tmp_path / "nospacing.mha"
    path.write_bytes(header + b"ElementDataFile = LOCAL\n" + _stored_bytes())
    with pytest.raises(SeriesError, match=r"nospacing\.mha: the file stores no voxel spacing"):
        read_volume(path)
    path.write_bytes(header + b"ElementSize = 0.8 0.7 2.5\nElementDataFile = LOCAL\n" + _stored_bytes())
    assert read_volume(path).spacing_mm == (2.5, 0.7, 0.8)


@pytest.mark.parametrize("pixdim", [0.0, 1.0])
def test_nifti_without_spacing_is_refused(tmp_path: Path, pixdim: float) -> None:
    path = tmp_path / "nospacing.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.rint(phantom_hu()).astype(np.int16)), str(path))
    header = bytearray(path.read_bytes())
    struct.pack_into("<8f", header, 76, *[pixdim] * 8)  # pixdim[0..7]
    struct.pack_into("<hh", header, 252, 0, 0)  # qform_code, sform_code: unset
    path.write_bytes(bytes(header))
    with pytest.raises(SeriesError, match=r"nospacing\.nii: the file stores no voxel spacing"):
        read_volume(path)


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(b"not a volume at all" * 20)
    with pytest.raises(SeriesError, match=r"corrupt\.nii\.gz: cannot read as \.nii\.gz \(") as caught:
        read_volume(path)
    assert "\n" not in str(caught.value)


def test_truncated_data_is_refused(tmp_path: Path) -> None:
    write_volume(ct_volume(), tmp_path / "ct.mhd")
    raw = tmp_path / "ct.raw"
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(SeriesError, match=r"ct\.mhd: cannot read as \.mhd") as caught:
        read_volume(tmp_path / "ct.mhd")
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match=r"absent\.nii: no such file"):
        read_volume(tmp_path / "absent.nii")


def test_raw_stored_values_are_refused_with_advice_and_accepted_when_declared(tmp_path: Path) -> None:
    stored = phantom_hu() + 1024.0
    path = write_volume(ct_volume(stored), tmp_path / "stored.nrrd")
    with pytest.raises(
        SeriesError, match=r"stored\.nrrd: looks like raw stored values 0\.\.4095.*--hu-offset -1024"
    ):
        read_volume(path)
    volume = read_volume(path, hu_offset=-1024.0)
    np.testing.assert_array_equal(volume.hu, np.rint(phantom_hu()))


def test_unit_range_floats_are_refused_and_accepted_when_declared(tmp_path: Path) -> None:
    unit = (phantom_hu() + 1024.0) / 4095.0
    path = write_volume(ct_volume(unit, pixel_id="float32"), tmp_path / "unit.nii.gz")
    with pytest.raises(
        SeriesError, match=r"unit\.nii\.gz: .*looks normalised to 0\.\.1.*--hu-scale and --hu-offset"
    ):
        read_volume(path)
    volume = read_volume(path, hu_scale=4095.0, hu_offset=-1024.0)
    np.testing.assert_allclose(volume.hu, phantom_hu(), atol=1e-3)


# --- bad output --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.dcm", "out", "out.gz", "out.nii.bz2"])
def test_output_extension_must_name_a_format(tmp_path: Path, name: str) -> None:
    with pytest.raises(
        OutputError, match=r"names no volume format; use \.nii, \.nii\.gz, \.mha, \.mhd, \.nrrd"
    ):
        write_volume(ct_volume(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = write_volume(ct_volume(), tmp_path / "ct.nrrd")
    before = path.read_bytes()
    with pytest.raises(OutputError, match=r"ct\.nrrd: exists; refusing to overwrite"):
        write_volume(ct_volume(phantom_hu(seed=1)), path)
    assert path.read_bytes() == before
    write_volume(ct_volume(phantom_hu(seed=1)), path, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]


def test_refuses_an_mhd_whose_data_file_exists(tmp_path: Path) -> None:
    (tmp_path / "ct.raw").write_bytes(b"someone else's data")
    with pytest.raises(OutputError, match=r"ct\.raw: exists; refusing to overwrite"):
        write_volume(ct_volume(), tmp_path / "ct.mhd")


def test_refuses_to_write_over_the_input(tmp_path: Path) -> None:
    path = write_volume(ct_volume(), tmp_path / "ct.mha")
    volume = read_volume(path)
    with pytest.raises(OutputError, match=r"ct\.mha: is the input volume"):
        write_volume(volume, tmp_path / "." / "ct.mha", overwrite=True)
    with pytest.raises(OutputError, match=r"is the input volume"):
        write_volume(volume.hu, path, like=volume, overwrite=True)


def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs like="):
        write_volume(phantom_hu(), tmp_path / "a.mha")
    with pytest.raises(ValueError, match="differs from like's"):
        write_volume(phantom_hu((2, 3, 4)), tmp_path / "a.mha", like=ct_volume())
    with pytest.raises(ValueError, match="unknown pixel_type 'int8'; valid: keep, int16, float32"):
        write_volume(ct_volume(), tmp_path / "a.mha", pixel_type="int8")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extension", "dtype", "bad"), [(".nii", np.float64, np.inf), (".nii.gz", np.float32, np.nan)]
)
def test_a_nifti_holding_nan_or_infinity_is_refused_though_itk_reads_it_as_zero(
    tmp_path: Path, extension: str, dtype: type, bad: float
) -> None:
    hu = np.full((3, 16, 16), -1000.0, dtype)
    hu[:, 4:12, 4:12] = 40.0
    hu[2, 7, 7] = bad
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.7, 2.5))
    path = tmp_path / f"ct{extension}"
    sitk.WriteImage(image, str(path))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # what ITK makes of it
    with pytest.raises(
        SeriesError, match=rf"ct{extension.replace('.', '[.]')}: contains NaN or infinite values"
    ):
        read_volume(path)
    hu[2, 7, 7] = 40.0  # the same file without the bad voxel reads
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.7, 0.7, 2.5))
    sitk.WriteImage(image, str(path))
    assert read_volume(path).hu.shape == (3, 16, 16)
