"""``echolatent anatomy``: anatomical criteria and shape attributes of mask sequences, per frame."""

from __future__ import annotations

from pathlib import Path

from echolatent.labels import LA, LV, MYO

FORMATS = ("tsv", "parquet")


def register(subparsers) -> None:
    """Add the ``anatomy`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "anatomy", help="12 anatomical criteria and shape attributes of label-map sequences, per frame",
        description="Read NIfTI/MetaImage label-map sequences (0 background, 1 LV, 2 MYO, 3 LA), measure the "
                    "12 anatomical plausibility criteria and the shape attributes of every frame, and write "
                    "one table with a row per (file, frame). With the default --grid, criteria 9-12 (the "
                    "thresholded ratios) are measured on a canonical isotropic grid of 0.3 mm resampled "
                    "(nearest neighbour) from the header spacing, criteria 1-8 (holes, gaps, fragments) on "
                    "the file's grid; attributes are given in pixels and in mm (from the header spacing).")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="mask sequences (.nii, .nii.gz, .mhd)")
    parser.add_argument("--out", type=Path, required=True, help="output table (.tsv or .parquet)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="table format (default: from the --out extension, else tsv)")
    parser.add_argument("--labels", default="1,2,3",
                        help="label set of the masks, e.g. '1,2' for masks without an LA label (default 1,2,3)")
    parser.add_argument("--grid", default="auto",
                        help="grid of criteria 9-12: a pixel size in mm of an isotropic grid, 'auto' (0.3 mm or the coarser native pixel side, "
                             "the default) or 'native' (all 12 criteria on the file's own pixels, as the "
                             "reference code)")
    parser.set_defaults(func=run)


def _parse_labels(text: str) -> tuple[int, ...]:
    try:
        labels = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"--labels must be a comma-separated list of 1, 2, 3, got {text!r}") from None
    if not labels or not set(labels) <= {LV, MYO, LA}:
        raise ValueError(f"--labels must be a comma-separated list of 1, 2, 3, got {text!r}")
    return labels


def _parse_grid(text):
    from echolatent.shape.grid import criteria_grid

    if text.strip().lower() in ("auto", "native"):
        return text.strip().lower()  # "auto" is resolved per file, from its spacing
    try:
        return criteria_grid(text)
    except ValueError:
        raise ValueError(f"--grid must be 'auto', 'native' or a positive pixel size in mm, got {text!r}") from None


def measure_file(path, labels=(LV, MYO, LA), grid="auto"):
    """Criteria and attributes of every frame of one mask file, as a DataFrame (file, frame, ...).

    ``grid`` is the grid of the criteria (:func:`echolatent.shape.criteria.anatomical_metrics`).
    """
    import numpy as np
    import pandas as pd

    from echolatent.io.errors import InputError
    from echolatent.io.itk import read_sequence
    from echolatent.shape.attributes import shape_attributes
    from echolatent.shape.criteria import anatomical_metrics

    masks, spacing = read_sequence(path)
    if masks.dtype == bool or masks.dtype.kind not in "ui":
        if masks.dtype.kind == "f" and np.all(np.mod(masks, 1) == 0):
            masks = masks.astype(np.int64)
        else:
            raise InputError(path, f"expected an integer label map, got pixel type {masks.dtype}")
    try:
        criteria = anatomical_metrics(masks, spacing, grid=grid, labels=labels)
        attributes = shape_attributes(masks, spacing)
    except (TypeError, ValueError) as err:
        raise InputError(path, str(err)) from None
    head = pd.DataFrame({"file": str(path), "frame": np.arange(len(masks)),
                         "spacing_h": spacing[0], "spacing_w": spacing[1]})
    return pd.concat([head, criteria.reset_index(drop=True), attributes.reset_index(drop=True)], axis=1)


def run(args) -> int:
    import pandas as pd

    from echolatent.io.errors import InputError

    try:
        labels = _parse_labels(args.labels)
        grid = _parse_grid(args.grid)
    except ValueError as err:
        raise InputError(None, str(err)) from None
    fmt = args.format or ("parquet" if args.out.suffix == ".parquet" else "tsv")
    tables = [measure_file(path, labels, grid) for path in args.files]
    table = pd.concat(tables, ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        table.to_parquet(args.out, index=False)
    else:
        table.to_csv(args.out, sep="\t", index=False, na_rep="NaN")
    n_bad = int(table["anatomical_errors"].sum())
    print(f"measured {len(table)} frames from {len(args.files)} file(s): {n_bad} with anatomical errors -> {args.out}")
    return 0
