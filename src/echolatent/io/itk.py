"""Read and write 2-D+t sequences (NIfTI, MetaImage) with SimpleITK.

Arrays are always ``(T, H, W)`` (frames, rows, columns) and spacing is ``(h, w)`` in mm,
the row and column pixel sizes. SimpleITK's own spacing is in ``(x, y, z)`` order,
i.e. ``(w, h, frame)``; the reversal happens here and only here, so that no other module
can transpose a mask by mixing conventions (nibabel would return ``(W, H, T)``).

SimpleITK is lenient where a cohort must not be, so headers and stored voxels are
checked here before its conversions hide a problem: ITK's NIfTI library replaces
non-finite float voxels by 0 and takes ``abs`` of a negative ``pixdim`` (turning 0 or NaN
into 1); its MetaImage reader takes ``abs`` of a negative ``ElementSpacing``, follows
``ElementDataFile`` anywhere on the disk and reports a short or missing data file as
"No such file or directory".
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from echolatent.io.atomic import atomic_path
from echolatent.io.errors import InputError

#: Pixel spacing used for the time axis of written sequences (SimpleITK needs one).
FRAME_SPACING = 1.0

#: Accepted values of ``read_sequence(kind=...)``.
KINDS = (None, "mask", "image")


def read_sequence(path, kind: str | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Read a 2-D image or 2-D+t sequence.

    Parameters
    ----------
    path : str or Path
        ``.nii``, ``.nii.gz``, ``.mhd`` or ``.mha`` file (other formats SimpleITK reads
        are read without the header checks).
    kind : {None, "mask", "image"}, optional
        What the file must hold, checked on the voxels as stored, before any conversion.
        ``"mask"``: an integer voxel type, or a floating type holding only finite
        whole numbers (after NIfTI ``scl_slope``/``scl_inter`` scaling). ``"image"``:
        finite everywhere. ``None`` (default) checks no voxel values (and ITK then reads
        non-finite NIfTI floats as 0).

    Returns
    -------
    array : ndarray, shape (T, H, W)
        A single 2-D image comes back with ``T = 1``.
    spacing : tuple of float
        ``(h, w)`` pixel size in mm.

    Raises
    ------
    InputError
        If the file is missing, unreadable or truncated, or is not 2-D/3-D; if its
        spacing (``pixdim``, ``ElementSpacing``) is not positive and finite; if a
        MetaImage data file is missing, truncated or outside the header's folder; or if
        the voxels do not fit ``kind``. The message names the field or the problem.
    ValueError
        If ``kind`` is not one of `KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    stored = None
    if _is_nifti(path):
        stored = _check_nifti(path, voxels=kind is not None)
    elif _is_metaimage(path):
        _check_metaimage(_metaimage_header(path))
    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as err:  # SimpleITK reports corrupt files this way
        first = str(err).strip().splitlines()
        detail = next((line for line in first if "rror" in line), first[-1] if first else "")
        raise InputError(path, f"unreadable or truncated image ({detail.strip()})") from None
    spacing_xyz = image.GetSpacing()
    if array.ndim == 2:
        array = array[None]
    elif array.ndim != 3:
        raise InputError(path, f"expected a 2-D image or 2-D+t sequence, got {array.ndim} dimensions")
    spacing = (float(spacing_xyz[1]), float(spacing_xyz[0]))
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(path, f"non-positive or non-finite pixel spacing {spacing}")
    if kind is not None:
        _check_voxels(path, kind, array, stored)
    return array, spacing


def data_files(path) -> list[Path]:
    """Every file a sequence is stored in, for hashing and provenance.

    Parameters
    ----------
    path : str or Path
        The file `read_sequence` is given.

    Returns
    -------
    list of Path
        ``[path]`` for NIfTI (and MetaImage with ``ElementDataFile = LOCAL``);
        ``[path, data_file]`` for a MetaImage header with a separate ``.raw``/``.zraw``,
        the data file as the header names it, relative to the header's folder.

    Raises
    ------
    InputError
        If a MetaImage header is missing, has no ``ElementDataFile`` or points outside
        its own folder.
    """
    path = Path(path)
    if not _is_metaimage(path):
        return [path]
    header = _metaimage_header(path)
    return [path] if header.data_file is None else [path, header.data_file]


def _check_voxels(path: Path, kind: str, array: np.ndarray, stored: np.ndarray | None) -> None:
    """Check voxel values against ``kind``.

    ``stored`` holds the voxels as the file stores them when the reader may have changed
    them (NIfTI floats); ``array`` is what the reader returned, after any scaling. ITK's
    MetaImage reader returns the stored values unchanged, so there ``stored`` is None.
    """
    stored = array if stored is None else stored
    integer = np.issubdtype(stored.dtype, np.integer)
    if kind == "mask" and not (integer or np.issubdtype(stored.dtype, np.floating)):
        raise InputError(path, f"mask voxels: stored as {stored.dtype}, expected integer labels")
    n_nan = n_inf = 0
    if not integer:
        n_nan, n_inf = int(np.isnan(stored).sum()), int(np.isinf(stored).sum())
    if kind == "image":
        if n_nan or n_inf:
            raise InputError(path, f"image voxels: non-finite values ({n_nan} NaN, {n_inf} infinite)")
        return
    n_fraction = 0
    if np.issubdtype(array.dtype, np.floating):
        n_fraction = int((np.isfinite(array) & (array != np.round(array))).sum())
    counts = [(n_nan, "NaN value"), (n_inf, "infinite value"), (n_fraction, "non-integer value")]
    problems = [f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts if n]
    if problems:
        raise InputError(path, f"mask voxels: {', '.join(problems)} (a mask holds integer labels)")


# ----------------------------------------------------------------------------- NIfTI
#: NIfTI datatype code -> (bytes per voxel, NumPy type or None where NumPy has none).
_NIFTI_TYPES = {
    2: (1, "u1"), 4: (2, "i2"), 8: (4, "i4"), 16: (4, "f4"), 32: (8, None), 64: (8, "f8"),
    128: (3, None), 256: (1, "i1"), 512: (2, "u2"), 768: (4, "u4"), 1024: (8, "i8"),
    1280: (8, "u8"), 1536: (16, None), 1792: (16, None), 2048: (32, None), 2304: (4, None),
}


@dataclass(frozen=True)
class _NiftiHeader:
    """The fields of a NIfTI-1/2 header that locate and describe the stored voxels."""

    byteorder: str
    datatype: int
    ndim: int
    n_voxels: int
    pixdim: tuple[float, ...]
    vox_offset: int

    @property
    def dtype(self) -> np.dtype | None:
        code = _NIFTI_TYPES.get(self.datatype, (0, None))[1]
        return None if code is None else np.dtype(self.byteorder + code)

    @property
    def nbytes(self) -> int | None:
        size = _NIFTI_TYPES.get(self.datatype, (None, None))[0]
        return None if size is None else self.vox_offset + self.n_voxels * size


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _parse_nifti_header(path: Path, head: bytes) -> _NiftiHeader:
    """Parse the first bytes of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header."""
    if len(head) < 348:
        raise InputError(path, f"unreadable or truncated image ({len(head)} bytes, shorter than a NIfTI header)")
    for order in "<>":
        sizeof_hdr = struct.unpack_from(order + "i", head)[0]
        if sizeof_hdr == 348:  # NIfTI-1: int16 dim, float32 pixdim and vox_offset
            datatype = struct.unpack_from(order + "h", head, 70)[0]
            dim = struct.unpack_from(order + "8h", head, 40)
            pixdim = struct.unpack_from(order + "8f", head, 76)
            vox_offset = max(int(struct.unpack_from(order + "f", head, 108)[0]), 352)
            break
        if sizeof_hdr == 540 and len(head) >= 540:  # NIfTI-2: int64 dim, float64 pixdim
            datatype = struct.unpack_from(order + "h", head, 12)[0]
            dim = struct.unpack_from(order + "8q", head, 16)
            pixdim = struct.unpack_from(order + "8d", head, 104)
            vox_offset = max(struct.unpack_from(order + "q", head, 168)[0], 544)
            break
    else:
        raise InputError(path, "unreadable or truncated image (not a NIfTI header)")
    if not 1 <= dim[0] <= 7:
        raise InputError(path, f"unreadable image (NIfTI dim[0] = {dim[0]})")
    n_voxels = math.prod(max(d, 1) for d in dim[1:dim[0] + 1])
    return _NiftiHeader(byteorder=order, datatype=datatype, ndim=dim[0], n_voxels=n_voxels,
                        pixdim=tuple(pixdim), vox_offset=vox_offset)


def _check_nifti(path: Path, voxels: bool) -> np.ndarray | None:
    """Check a NIfTI file's size and in-plane ``pixdim``; return its float voxels as stored.

    The stored voxels come back only when ``voxels`` is true and the stored type is
    floating (the only case where they can differ from what ITK returns); else None.
    """
    if path.name.lower().endswith(".gz"):
        try:
            blob = gzip.decompress(path.read_bytes())
        except (EOFError, OSError, zlib.error) as err:
            raise InputError(path, f"unreadable or truncated image (compressed stream: {err})") from None
        size, head = len(blob), blob[:540]
    else:
        blob = None
        size = path.stat().st_size
        with path.open("rb") as stream:
            head = stream.read(540)
    header = _parse_nifti_header(path, head)
    if header.nbytes is not None and size < header.nbytes:
        raise InputError(path, f"unreadable or truncated image ({size} bytes, expected at least {header.nbytes})")
    # Only the in-plane sizes become the spacing; ITK itself turns a 0 frame pixdim into 1.
    in_plane = header.pixdim[1:min(header.ndim, 2) + 1]
    if not all(math.isfinite(p) and p > 0 for p in in_plane):
        names = ", ".join(f"pixdim[{i + 1}]" for i in range(len(in_plane)))
        raise InputError(path, f"pixdim: in-plane pixel size ({names}) = "
                               f"({', '.join(f'{p:g}' for p in in_plane)}) mm must be positive and finite")
    dtype = header.dtype
    if not voxels or dtype is None or dtype.kind != "f":
        return None
    if blob is None:
        return np.fromfile(path, dtype=dtype, count=header.n_voxels, offset=header.vox_offset)
    return np.frombuffer(blob, dtype=dtype, count=header.n_voxels, offset=header.vox_offset)


# ----------------------------------------------------------------------------- MetaImage
#: MetaImage element type -> bytes per value (MetaIO's MET_ValueTypeSize).
_MET_SIZES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


@dataclass(frozen=True)
class _MetaImageHeader:
    """A parsed MetaImage header.

    Attributes
    ----------
    path : Path
        The header (``.mhd``/``.mha``).
    fields : dict of str to str
        ``Key = value`` fields up to ``ElementDataFile`` (always the last one).
    data_file : Path or None
        The file holding the pixels, or None for ``LOCAL`` (pixels follow the header).
    data_offset : int
        Bytes of header text in ``path`` (where ``LOCAL`` pixels start).
    """

    path: Path
    fields: dict
    data_file: Path | None
    data_offset: int


def _is_metaimage(path: Path) -> bool:
    return path.suffix.lower() in (".mhd", ".mha")


def _metaimage_header(path: Path) -> _MetaImageHeader:
    """Parse a MetaImage header and locate its data file, which must lie in the header's folder."""
    fields, offset = {}, 0
    try:
        with path.open("rb") as stream:
            for line in stream:  # binary: LOCAL pixels follow the text
                offset += len(line)
                key, sep, value = line.decode("latin-1").partition("=")
                if sep:
                    fields[key.strip()] = value.strip()
                    if key.strip() == "ElementDataFile":
                        break
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    name = fields.get("ElementDataFile")
    if not name:
        raise InputError(path, "ElementDataFile: field missing")
    if name.upper() == "LOCAL":
        return _MetaImageHeader(path, fields, None, offset)
    if name.startswith("LIST") or "%" in name:
        raise InputError(path, f"ElementDataFile = {name}: multi-file data (LIST or pattern) is not supported")
    data_file = path.parent / name  # an absolute name replaces the folder, as in ITK
    folder = path.parent.resolve()
    if not data_file.resolve().is_relative_to(folder):
        raise InputError(path, f"ElementDataFile = {name}: data file is outside the header's folder {folder}")
    return _MetaImageHeader(path, fields, data_file, offset)


def _check_metaimage(header: _MetaImageHeader) -> None:
    """Check ``ElementSpacing`` and that the data file exists and is complete."""
    path, fields = header.path, header.fields
    if "ElementSpacing" in fields:
        value = fields["ElementSpacing"]
        try:
            spacing = [float(v) for v in value.split()]
        except ValueError:
            spacing = [math.nan]
        if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise InputError(path, f"ElementSpacing = {value}: spacing must be positive and finite")
    data_file = header.data_file
    if data_file is not None and not data_file.is_file():
        raise InputError(path, f"ElementDataFile = {fields['ElementDataFile']}: data file {data_file} is missing")
    expected = _metaimage_data_bytes(fields)
    if expected is None:
        return
    skip = _int_field(fields, "HeaderSize") or 0
    if data_file is None:
        available = path.stat().st_size - header.data_offset - max(skip, 0)
        if available < expected:
            raise InputError(path, f"pixel data (ElementDataFile = LOCAL) truncated: {available} bytes after the "
                                   f"header, expected {expected}")
        return
    size = data_file.stat().st_size
    if skip > 0:
        expected += skip
    if size < expected:
        raise InputError(data_file, f"data file truncated: {size} bytes, expected {expected} "
                                    f"(ElementDataFile of {path.name})")


def _int_field(fields: dict, key: str) -> int | None:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        return None


def _metaimage_data_bytes(fields: dict) -> int | None:
    """Bytes the data must hold (compressed size when compressed), or None if unknown."""
    if fields.get("CompressedData", "False").lower() == "true":
        return _int_field(fields, "CompressedDataSize")  # else left to ITK's zlib
    if fields.get("BinaryData", "True").lower() != "true" or fields.get("ElementType") not in _MET_SIZES:
        return None
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
    except (KeyError, ValueError):
        return None
    channels = _int_field(fields, "ElementNumberOfChannels") or 1
    return math.prod(dims) * channels * _MET_SIZES[fields["ElementType"]]


# ----------------------------------------------------------------------------- writing
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
    with atomic_path(path) as tmp:  # the temporary name keeps the suffix, which selects ITK's writer
        sitk.WriteImage(image, str(tmp), compress)
