"""Read and write 2-D+t sequences (NIfTI, MetaImage) with SimpleITK.

Arrays are always ``(T, H, W)`` (frames, rows, columns) and spacing is ``(h, w)`` in mm,
the row and column pixel sizes. SimpleITK's own spacing is in ``(x, y, z)`` order,
i.e. ``(w, h, frame)``; the reversal happens here and only here, so that no other module
can transpose a mask by mixing conventions (nibabel would return ``(W, H, T)``).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from echolatent.io.errors import InputError

#: Pixel spacing used for the time axis of written sequences (SimpleITK needs one).
FRAME_SPACING = 1.0


def read_sequence(path) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a 2-D image or 2-D+t sequence.

    Parameters
    ----------
    path : str or Path
        ``.nii``, ``.nii.gz`` or ``.mhd`` file.

    Returns
    -------
    array : ndarray, shape (T, H, W)
        A single 2-D image comes back with ``T = 1``.
    spacing : tuple of float
        ``(h, w)`` pixel size in mm.

    Raises
    ------
    InputError
        If the file is missing, unreadable or truncated, or is not 2-D/3-D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as err:  # SimpleITK reports truncated/corrupt files this way
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "rror" in line), first[-1] if first else "")
        raise InputError(path, f"unreadable or truncated image ({detail.strip()})") from None
    _check_complete(path, array)
    spacing_xyz = image.GetSpacing()
    if array.ndim == 2:
        array = array[None]
    elif array.ndim != 3:
        raise InputError(path, f"expected a 2-D image or 2-D+t sequence, got {array.ndim} dimensions")
    spacing = (float(spacing_xyz[1]), float(spacing_xyz[0]))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(path, f"non-positive or non-finite pixel spacing {spacing}")
    return array, spacing


NIFTI_HEADER_BYTES = 348


def _stored_bytes(path: Path) -> int:
    """Number of bytes the file holds once decompressed (raises InputError on a broken gzip stream)."""
    if path.name.endswith(".gz"):
        total = 0
        try:
            with gzip.open(path, "rb") as stream:
                while block := stream.read(1 << 20):
                    total += len(block)
        except (EOFError, OSError, zlib.error) as err:
            raise InputError(path, f"unreadable or truncated image (compressed stream: {err})") from None
        return total
    return path.stat().st_size


def _check_complete(path: Path, array: np.ndarray) -> None:
    """SimpleITK reads truncated NIfTI/MetaImage files without complaint; check the byte count."""
    if path.suffix == ".mhd":
        header = {}
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            header[key.strip()] = value.strip()
        if header.get("CompressedData", "False").lower() == "true":
            return  # zlib-compressed .zraw: ITK itself fails on truncation
        raw = path.parent / header.get("ElementDataFile", "")
        if header.get("ElementDataFile") not in (None, "LOCAL") and raw.is_file() \
                and raw.stat().st_size < array.nbytes:
            raise InputError(raw, f"truncated image data ({raw.stat().st_size} bytes, expected {array.nbytes})")
        return
    expected = array.nbytes + NIFTI_HEADER_BYTES
    stored = _stored_bytes(path)
    if stored < expected:
        raise InputError(path, f"unreadable or truncated image ({stored} bytes, expected at least {expected})")


def write_sequence(path, array: np.ndarray, spacing, *, compress: bool = True) -> None:
    """Write a ``(T, H, W)`` (or ``(H, W)``) array with spacing ``(h, w)`` mm.

    The file is written under a temporary name in the same folder and renamed, so a
    crash never leaves a partial file behind. MetaImage (``.mhd``) writes its ``.raw``
    beside it.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected (T, H, W) or (H, W), got shape {array.shape}")
    image = sitk.GetImageFromArray(array)
    h, w = (float(s) for s in spacing)
    image.SetSpacing((w, h) if array.ndim == 2 else (w, h, FRAME_SPACING))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mhd":
        # The header names its .raw; write both under final names via a temp folder.
        tmp_dir = path.parent / f".tmp-{path.stem}-{os.getpid()}"
        tmp_dir.mkdir(exist_ok=True)
        try:
            sitk.WriteImage(image, str(tmp_dir / path.name), compress)
            for produced in tmp_dir.iterdir():
                os.replace(produced, path.parent / produced.name)
        finally:
            for leftover in tmp_dir.iterdir():
                leftover.unlink()
            tmp_dir.rmdir()
        return
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name[: -len(suffix)]}{suffix}")
    try:
        sitk.WriteImage(image, str(tmp), compress)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
