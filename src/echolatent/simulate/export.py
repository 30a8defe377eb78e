"""Streaming writers of a simulated cohort: the ``store`` format and the CAMUS layouts.

``store`` (the workflow's default)::

    patients.tsv            patient_id, group, severity, age, sex, bsa (what an analysis may see)
    sequences.h5            /{patient_id}/{view}/mask   (T, H, W) uint8, observed full cycle
                                             /image  (T, H, W) uint8, B-mode (unless images are off)
                            group attrs: spacing (h, w mm), ed, es (0-based), frame_rate (Hz),
                            image_quality; 4 frames per chunk, masks gzip level 1, images
                            as ``image.store_compression`` (default uncompressed)
    truth/clean_masks.h5    same groups, dataset mask = clean labels
    truth/patients.tsv      per patient: covariates, planted effects, analytic volumes, geometry,
                            native grid (``spacing_h_mm``, ``spacing_w_mm``, ``rows``, ``cols``:
                            per patient with ``image.geometry: camus-like``)
    truth/frames.tsv        per patient, view and frame: phase, analytic values, clean attributes,
                            defects (``defect_<type>`` 0/1 flags, ``defect`` kind or ``none``,
                            ``defect_row``/``defect_col``, ``spike_area_change``)
    manifest.json           simulator config, seed, versions

``camus-nifti`` (CAMUS 2023 layout) and ``camus-mhd`` (2019 layout) write the same
``patients.tsv`` and ``truth/`` plus the release's own files (see :mod:`echolatent.io.camus`):
half cycles ED..ES (1-based ``ED: 1``, ``ES: NbFrame`` in ``Info_{view}.cfg``), ED/ES
frames taken from them, and for the 2023 layout the full cycle ``_sequence`` files with
the ``ED_full``/``ES_full`` keys. Split lists ``database_split/`` are stratified by group.

Every file is written in a deterministic way (no time stamps), so the same seed and config
give bit-identical folders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

import echolatent
from echolatent.io import camus
from echolatent.simulate.config import SimulationConfig
from echolatent.simulate.population import COHORT_KEY

PATIENT_COLUMNS = ("patient_id", "group", "severity", "age", "sex", "bsa")
MASK_FILTER = {"compression": "gzip", "compression_opts": 1}
IMAGE_FILTERS = {"none": {}, "lzf": {"compression": "lzf"}, "gzip": {"compression": "gzip", "compression_opts": 1}}


def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        return format(value, ".9g")
    text = str(value)
    if "\t" in text or "\n" in text:
        raise ValueError(f"TSV value with a tab or newline: {text!r}")
    return text


class _Tsv:
    """Append-only TSV with the columns fixed by the first row."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "w", encoding="utf-8", newline="\n")
        self.columns = None

    def write(self, row: dict) -> None:
        if self.columns is None:
            self.columns = list(row)
            self.handle.write("\t".join(self.columns) + "\n")
        elif list(row) != self.columns:
            missing = set(self.columns) ^ set(row)
            raise ValueError(f"TSV row columns differ from the header: {sorted(missing)}")
        self.handle.write("\t".join(_fmt(row[c]) for c in self.columns) + "\n")

    def write_columns(self, columns: dict) -> None:
        """Write rows given as equal-length columns (faster than row by row)."""
        if self.columns is None:
            self.columns = list(columns)
            self.handle.write("\t".join(self.columns) + "\n")
        elif list(columns) != self.columns:
            missing = set(self.columns) ^ set(columns)
            raise ValueError(f"TSV columns differ from the header: {sorted(missing)}")
        text = [_format_column(values) for values in columns.values()]
        self.handle.write("".join("\t".join(row) + "\n" for row in zip(*text)))

    def close(self) -> None:
        self.handle.close()


def _format_column(values) -> list[str]:
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return [format(x, ".9g") if x == x else "nan" for x in array.tolist()]
    if array.dtype.kind in "iub":
        return [str(int(x)) for x in array.tolist()]
    return [_fmt(x) for x in array.tolist()]


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without modification times (bit-reproducible files)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def _h5(path: Path) -> h5py.File:
    """A new HDF5 file whose metadata cache is capped (memory independent of the cohort size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h5 = h5py.File(path, "w", libver=("earliest", "v110"), track_order=False)
    config = h5.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = 1 << 20
    config.min_size = 1 << 20
    config.max_size = 4 << 20
    h5.id.set_mdc_config(config)
    return h5


_DCPL: dict = {}


def _dcpl(shape, filters: dict):
    """Cached dataset creation property list: 4 frames per chunk (cheaper than 1 to compress), the filter, no times."""
    key = (tuple(shape), tuple(sorted(filters.items())))
    if key not in _DCPL:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((min(4, shape[0]),) + tuple(shape[1:]))
        dcpl.set_obj_track_times(False)
        if filters.get("compression") == "gzip":
            dcpl.set_deflate(int(filters.get("compression_opts", 1)))
        elif filters.get("compression") == "lzf":
            dcpl.set_filter(h5py.h5z.FILTER_LZF, h5py.h5z.FLAG_OPTIONAL)
        _DCPL[key] = dcpl
    return _DCPL[key]


def _dataset(group: h5py.Group, name: str, data: np.ndarray, filters: dict) -> None:
    """Write a uint8 (T, H, W) dataset, chunked by 4 frames (low-level API: fast)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    space = h5py.h5s.create_simple(data.shape)
    dset = h5py.h5d.create(group.id, name.encode(), h5py.h5t.NATIVE_UINT8, space, dcpl=_dcpl(data.shape, filters))
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def _numeric_attr(group: h5py.Group, name: str, value) -> None:
    value = np.asarray(value)
    space = h5py.h5s.create_simple(value.shape) if value.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    attr = h5py.h5a.create(group.id, name.encode(), h5py.h5t.py_create(value.dtype), space)
    attr.write(np.ascontiguousarray(value))


def frame_columns(sim) -> dict:
    """Columns of ``truth/frames.tsv`` for one patient (views in order, frames in order)."""
    out: dict = {}
    for view, v in sim.views.items():
        n = v.mask.shape[0]
        block = {"patient_id": [sim.patient_id] * n, "view": [view] * n}
        block.update({key: list(np.asarray(values).tolist()) for key, values in v.frames.items()})
        block["defect"] = [kind or "none" for kind in block["defect"]]
        for key, values in block.items():
            out.setdefault(key, []).extend(values)
    return out


def split_assignment(groups: dict[str, str], fractions, seed: int) -> dict[str, str]:
    """Patient -> train/val/test, stratified by group, seeded."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(COHORT_KEY, 2)))
    out = {}
    for group in sorted(set(groups.values())):
        members = sorted(p for p, g in groups.items() if g == group)
        order = rng.permutation(len(members))
        n = len(members)
        n_test = int(round(fractions[2] * n))
        n_val = int(round(fractions[1] * n))
        n_val = min(n_val, n - n_test)
        for rank, k in enumerate(order):
            out[members[k]] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
    return out


class CohortWriter:
    """Common part: covariates, truth tables, clean masks, manifest."""

    def __init__(self, fmt: str, root: Path, config: SimulationConfig):
        self.fmt, self.root, self.config = fmt, Path(root), config
        self.patients = _Tsv(self.root / "patients.tsv")
        self.truth_patients = _Tsv(self.root / "truth" / "patients.tsv")
        self.truth_frames = _Tsv(self.root / "truth" / "frames.tsv")
        self.clean = _h5(self.root / "truth" / "clean_masks.h5")
        self.clean.attrs["format"] = "echolatent-simulator-clean-masks"
        self.groups: dict[str, str] = {}

    def add(self, sim) -> None:
        self.patients.write(sim.covariates())
        self.truth_patients.write(sim.truth)
        self.truth_frames.write_columns(frame_columns(sim))
        patient = _group(self.clean, sim.patient_id)
        for view, v in sim.views.items():
            group = _group(patient, view)
            _dataset(group, "mask", v.clean, MASK_FILTER)
            self._attrs(group, v)
        self.groups[sim.patient_id] = sim.patient.group
        self.add_sequences(sim)

    @staticmethod
    def _attrs(group: h5py.Group, v) -> None:
        _numeric_attr(group, "spacing", np.asarray(v.spacing, dtype=np.float64))
        _numeric_attr(group, "ed", np.int64(v.ed))
        _numeric_attr(group, "es", np.int64(v.es))
        _numeric_attr(group, "frame_rate", np.float64(v.frame_rate))
        group.attrs["image_quality"] = v.image_quality

    def add_sequences(self, sim) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        for table in (self.patients, self.truth_patients, self.truth_frames):
            table.close()
        self.clean.close()
        self.finish()
        manifest = {
            "format": self.fmt,
            "simulator": "echolatent.simulate",
            "echolatent_version": echolatent.__version__,
            "numpy_version": np.__version__,
            "seed": self.config.seed,
            "n_patients": self.config.n_patients,
            "views": list(self.config.views),
            "config": self.config.to_dict(),
        }
        (self.root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def finish(self) -> None:
        pass


class StoreWriter(CohortWriter):
    """``store`` format: one HDF5 file with every observed sequence and its images."""

    def __init__(self, root: Path, config: SimulationConfig):
        super().__init__("store", root, config)
        self.h5 = _h5(self.root / "sequences.h5")
        self.h5.attrs["format"] = "echolatent-simulator-store"

    def add_sequences(self, sim) -> None:
        patient = _group(self.h5, sim.patient_id)
        for view, v in sim.views.items():
            group = _group(patient, view)
            _dataset(group, "mask", v.mask, MASK_FILTER)
            if v.image is not None:
                _dataset(group, "image", v.image, IMAGE_FILTERS[self.config.image.store_compression])
            self._attrs(group, v)

    def finish(self) -> None:
        self.h5.close()


class CamusWriter(CohortWriter):
    """CAMUS 2023 NIfTI (``camus-nifti``) or 2019 MetaImage (``camus-mhd``) layout."""

    def add_sequences(self, sim) -> None:
        from echolatent.io.itk import write_sequence  # SimpleITK only for these layouts

        layout = self.fmt
        compress = layout == "camus-nifti"
        pid = sim.patient_id
        for view, v in sim.views.items():
            half = v.half
            files = [("half", v.mask[half], True), ("ED", v.mask[v.ed], True), ("ES", v.mask[v.es], True)]
            if v.image is not None:
                files += [("half", v.image[half], False), ("ED", v.image[v.ed], False), ("ES", v.image[v.es], False)]
            if layout == "camus-nifti":
                files.append(("full", v.mask, True))
                if v.image is not None:
                    files.append(("full", v.image, False))
            for kind, array, gt in files:
                path = camus.sequence_file(self.root, pid, view, kind, layout, gt=gt)
                write_sequence(path, np.ascontiguousarray(array), v.spacing, compress=compress)
            n_half = v.es - v.ed + 1
            cfg = {"ED": 1, "ES": n_half, "NbFrame": n_half, "Sex": sim.patient.sex,
                   "Age": int(round(sim.patient.age)), "ImageQuality": v.image_quality}
            truth = sim.truth
            if layout == "camus-nifti":
                cfg["EF"] = int(round(truth["ef_pct"]))
                cfg["FrameRate"] = round(v.frame_rate, 2)
                cfg["ED_full"] = v.ed + 1
                cfg["ES_full"] = v.es + 1
            else:
                cfg["LVedv"] = round(truth["edv_ml"], 2)
                cfg["LVesv"] = round(truth["esv_ml"], 2)
                cfg["LVef"] = round(truth["ef_pct"], 2)
            camus.write_cfg(camus.cfg_file(self.root, pid, view, layout), cfg)

    def finish(self) -> None:
        camus.write_split_lists(self.root, split_assignment(self.groups, self.config.split_fractions,
                                                            self.config.seed))


def open_writer(fmt: str, root, config: SimulationConfig) -> CohortWriter:
    """The streaming writer of ``fmt`` into folder ``root``: ``add(sim)`` per patient, then ``close()``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "store":
        return StoreWriter(root, config)
    if fmt in ("camus-nifti", "camus-mhd"):
        return CamusWriter(fmt, root, config)
    raise ValueError(f"unknown format {fmt!r}")
