"""Damaged NIfTI / MetaImage inputs: what ``read_sequence`` must refuse, and ``data_files``.

Every damaged file is made by a real writer (SimpleITK) and then patched at the byte
offsets of the NIfTI-1 specification or in the MetaImage header text, so the truth each
test asserts (voxel counts, sizes, field names) comes from the file, not from the reader.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from echolatent.io import InputError
from echolatent.io.itk import data_files, read_sequence, write_sequence

# NIfTI-1 header offsets (nifti1.h): dim[8] int16 @40, pixdim[8] float32 @76,
# vox_offset float32 @108, scl_slope / scl_inter float32 @112 / @116.
PIXDIM, VOX_OFFSET, SCL_SLOPE = 76, 108, 112


def labels(shape=(3, 6, 5)):
    return (np.arange(np.prod(shape)).reshape(shape) % 4).astype(np.uint8)


def nifti_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def patch_nifti(path: Path, offset: int, fmt: str, *values) -> None:
    data = bytearray(nifti_bytes(path))
    struct.pack_into("<" + fmt, data, offset, *values)
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))


def stored_voxels(path: Path, dtype) -> np.ndarray:
    """The voxels exactly as stored in a NIfTI file (independent of any reader)."""
    data = nifti_bytes(path)
    offset = int(struct.unpack_from("<f", data, VOX_OFFSET)[0])
    return np.frombuffer(data[offset:], dtype=dtype)


def write_mhd(path: Path, array, spacing=(0.3, 0.2)) -> Path:
    """A MetaImage header plus an uncompressed ``.raw``, as in the CAMUS 2019 release."""
    write_sequence(path, array, spacing, compress=False)
    return path.with_suffix(".raw")


def set_field(header: Path, key: str, value: str) -> None:
    text = header.read_text()
    assert re.search(rf"^{key} = ", text, flags=re.M), f"{key} not in the header"
    header.write_text(re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M))


# ----------------------------------------------------------------------------- defect 1: NaN / non-finite voxels
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nan_in_a_float_nifti_mask_is_refused(tmp_path, suffix):
    mask = labels().astype(np.float32)
    mask.flat[:12] = np.nan
    path = tmp_path / f"mask{suffix}"
    write_sequence(path, mask, (0.3, 0.2))
    assert np.isnan(stored_voxels(path, "<f4")).sum() == 12  # the file does hold the NaNs
    with pytest.raises(InputError) as err:
        read_sequence(path, kind="mask")
    assert err.value.path == str(path)
    assert "mask voxels" in err.value.reason and "12 NaN" in err.value.reason


def test_an_all_nan_nifti_mask_is_not_read_as_an_empty_mask(tmp_path):
    path = tmp_path / "mask.nii.gz"
    write_sequence(path, np.full((2, 4, 5), np.nan, np.float32), (0.3, 0.2))
    with pytest.raises(InputError, match=r"mask\.nii\.gz: mask voxels: 40 NaN values"):
        read_sequence(path, kind="mask")


def test_nan_in_a_metaimage_mask_is_refused(tmp_path):
    mask = labels().astype(np.float64)
    mask[1, 2, 3] = np.nan
    mask[2, 0, 0] = np.inf
    path = tmp_path / "mask.mhd"
    raw = write_mhd(path, mask)
    assert np.isnan(np.fromfile(raw, "<f8")).sum() == 1
    with pytest.raises(InputError, match=r"mask\.mhd: mask voxels: 1 NaN value, 1 infinite value"):
        read_sequence(path, kind="mask")


@pytest.mark.parametrize("suffix", [".nii.gz", ".mhd"])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_non_finite_image_voxels_are_refused(tmp_path, suffix, bad):
    image = np.linspace(0, 255, 3 * 6 * 5, dtype=np.float32).reshape(3, 6, 5)
    image[0, 1, 1] = image[2, 5, 4] = bad
    path = tmp_path / f"image{suffix}"
    write_sequence(path, image, (0.3, 0.2), compress=suffix != ".mhd")
    with pytest.raises(InputError) as err:
        read_sequence(path, kind="image")
    assert err.value.path == str(path)
    assert err.value.reason.startswith("image voxels: non-finite values")
    assert ("2 NaN" if np.isnan(bad) else "2 infinite") in err.value.reason


@pytest.mark.parametrize("suffix", [".nii.gz", ".mhd"])
def test_non_integer_float_mask_is_refused(tmp_path, suffix):
    mask = labels().astype(np.float32)
    mask[0, 0, :3] = 1.5
    path = tmp_path / f"mask{suffix}"
    write_sequence(path, mask, (0.3, 0.2))
    with pytest.raises(InputError, match=r"mask voxels: 3 non-integer values"):
        read_sequence(path, kind="mask")


def test_scaled_integer_nifti_mask_is_checked_after_scaling(tmp_path):
    # uint8 labels 0..3 stored with scl_slope 0.5: the labels the file means are 0, 0.5, 1, 1.5.
    path = tmp_path / "mask.nii"
    write_sequence(path, labels(), (0.3, 0.2))
    patch_nifti(path, SCL_SLOPE, "ff", 0.5, 0.0)
    expected = int(np.isin(labels(), (1, 3)).sum())
    array, _ = read_sequence(path)  # also: not mistaken for a truncated file (float64 > stored bytes)
    np.testing.assert_array_equal(array, labels() * 0.5)
    with pytest.raises(InputError, match=rf"mask voxels: {expected} non-integer values"):
        read_sequence(path, kind="mask")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mhd"])
def test_valid_masks_and_images_pass_the_checks(tmp_path, suffix):
    # Integer masks, float masks holding whole numbers, and finite float images are fine.
    for name, array, kind in [("int", labels(), "mask"), ("float", labels().astype(np.float32), "mask"),
                              ("image", labels().astype(np.float32) * 0.25, "image")]:
        path = tmp_path / f"{name}{suffix}"
        write_sequence(path, array, (0.3, 0.2))
        back, spacing = read_sequence(path, kind=kind)
        np.testing.assert_array_equal(back, array)
        assert spacing == pytest.approx((0.3, 0.2))


def test_nan_scaling_slope_means_unscaled(tmp_path):
    # nibabel writes scl_slope = scl_inter = NaN for "no scaling"; NIfTI says slope 0/NaN = unscaled.
    path = tmp_path / "mask.nii.gz"
    write_sequence(path, labels().astype(np.float32), (0.3, 0.2))
    patch_nifti(path, SCL_SLOPE, "ff", np.nan, np.nan)
    back, _ = read_sequence(path, kind="mask")
    np.testing.assert_array_equal(back, labels())


def test_default_kind_keeps_the_old_behaviour_and_bad_kind_is_an_error(tmp_path):
    path = tmp_path / "mask.nii"
    write_sequence(path, np.full((2, 4, 5), np.nan, np.float32), (0.3, 0.2))
    array, _ = read_sequence(path)  # no kind: no voxel check (callers switch explicitly)
    assert array.shape == (2, 4, 5)
    with pytest.raises(ValueError, match="kind"):
        read_sequence(path, kind="label")


# ----------------------------------------------------------------------------- defect 2: MetaImage headers
def test_metaimage_data_file_outside_the_header_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "patient"
    folder.mkdir()
    raw = write_mhd(elsewhere / "secret.mhd", labels())
    header = folder / "mask.mhd"
    write_mhd(header, labels())
    (folder / "link.raw").symlink_to(raw)
    for value in (str(raw), "../elsewhere/secret.raw", "link.raw"):
        set_field(header, "ElementDataFile", value)
        with pytest.raises(InputError) as err:
            read_sequence(header)
        assert err.value.path == str(header)
        assert err.value.reason.startswith("ElementDataFile") and "outside" in err.value.reason
        assert value in err.value.reason
        with pytest.raises(InputError, match="ElementDataFile"):
            data_files(header)


def test_metaimage_data_file_inside_the_header_folder_is_read(tmp_path):
    mask = labels()
    header = tmp_path / "mask.mhd"
    raw = write_mhd(header, mask)
    (tmp_path / "data").mkdir()
    raw.rename(tmp_path / "data" / "pixels.raw")
    for value in ("data/pixels.raw", "./data/../data/pixels.raw", str(tmp_path / "data" / "pixels.raw")):
        set_field(header, "ElementDataFile", value)
        np.testing.assert_array_equal(read_sequence(header, kind="mask")[0], mask)


def test_metaimage_local_data(tmp_path):
    mask = labels()
    header = tmp_path / "mask.mhd"
    raw = write_mhd(header, mask)
    text = header.read_text().replace("ElementDataFile = mask.raw", "ElementDataFile = LOCAL")
    header.write_bytes(text.encode() + raw.read_bytes())
    raw.unlink()
    np.testing.assert_array_equal(read_sequence(header, kind="mask")[0], mask)
    assert data_files(header) == [header]
    header.write_bytes(text.encode() + mask.tobytes()[:-7])
    with pytest.raises(InputError, match=rf"mask\.mhd: .*truncated.*{mask.nbytes - 7} bytes.*expected {mask.nbytes}"):
        read_sequence(header)


@pytest.mark.parametrize("value", ["-0.2 0.3 1", "0.2 0 1", "nan 0.3 1", "0.2 inf 1", "0.2 0.3 -1", "0.2 x 1"])
def test_metaimage_non_positive_spacing_is_refused(tmp_path, value):
    header = tmp_path / "mask.mhd"
    write_mhd(header, labels())
    set_field(header, "ElementSpacing", value)
    with pytest.raises(InputError) as err:
        read_sequence(header)
    assert err.value.path == str(header)
    assert err.value.reason.startswith("ElementSpacing") and value in err.value.reason


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("pixdim", [(-0.2, 0.3), (0.2, 0.0), (np.nan, 0.3), (0.2, np.inf)])
def test_nifti_non_positive_pixdim_is_refused(tmp_path, suffix, pixdim):
    path = tmp_path / f"mask{suffix}"
    write_sequence(path, labels(), (0.3, 0.2))
    assert struct.unpack_from("<2f", nifti_bytes(path), PIXDIM + 4) == pytest.approx((0.2, 0.3))
    patch_nifti(path, PIXDIM + 4, "2f", *pixdim)  # pixdim[1] (x = column width), pixdim[2] (y = row height)
    with pytest.raises(InputError) as err:
        read_sequence(path)
    assert err.value.path == str(path)
    assert err.value.reason.startswith("pixdim")


def test_truncated_metaimage_raw_names_the_raw_file_and_sizes(tmp_path):
    mask = labels()  # 90 bytes of uint8
    header = tmp_path / "mask.mhd"
    raw = write_mhd(header, mask)
    raw.write_bytes(raw.read_bytes()[:50])
    with pytest.raises(InputError) as err:
        read_sequence(header)
    assert err.value.path == str(raw)
    assert "truncated" in err.value.reason and "No such file" not in err.value.reason
    assert "50 bytes" in err.value.reason and f"expected {mask.size}" in err.value.reason


def test_truncated_compressed_metaimage_data_is_named(tmp_path):
    header = tmp_path / "image.mhd"
    write_sequence(header, np.random.default_rng(0).random((2, 30, 40)).astype(np.float32), (0.3, 0.2))
    zraw = tmp_path / "image.zraw"
    size = zraw.stat().st_size
    zraw.write_bytes(zraw.read_bytes()[: size // 2])
    with pytest.raises(InputError, match=rf"image\.zraw: .*truncated.*{size // 2} bytes.*expected {size}"):
        read_sequence(header)


def test_missing_metaimage_raw_is_called_missing(tmp_path):
    header = tmp_path / "mask.mhd"
    raw = write_mhd(header, labels())
    raw.unlink()
    with pytest.raises(InputError) as err:
        read_sequence(header)
    assert err.value.path == str(header)
    assert err.value.reason.startswith("ElementDataFile") and "missing" in err.value.reason
    assert str(raw) in err.value.reason and "No such file" not in err.value.reason


# ----------------------------------------------------------------------------- defect 3: data_files
def test_data_files_lists_every_stored_file(tmp_path):
    header = tmp_path / "seq.mhd"
    raw = write_mhd(header, labels())
    assert data_files(header) == [header, raw]
    assert data_files(str(header)) == [header, raw]
    compressed = tmp_path / "zipped.mhd"
    write_sequence(compressed, labels(), (0.3, 0.2))
    assert data_files(compressed) == [compressed, tmp_path / "zipped.zraw"]
    (tmp_path / "sub").mkdir()
    raw.rename(tmp_path / "sub" / "seq.raw")
    set_field(header, "ElementDataFile", "sub/seq.raw")
    assert data_files(header) == [header, tmp_path / "sub" / "seq.raw"]
    for suffix in (".nii", ".nii.gz"):
        write_sequence(tmp_path / f"seq{suffix}", labels(), (0.3, 0.2))
        assert data_files(tmp_path / f"seq{suffix}") == [tmp_path / f"seq{suffix}"]
