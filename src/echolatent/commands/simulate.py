"""``echolatent simulate``: write a synthetic cohort (store format or CAMUS layouts)."""

from __future__ import annotations

import sys
from pathlib import Path

#: Keys under which a YAML file may hold the simulator settings (else the whole mapping).
CONFIG_KEYS = (("simulation",), ("cohort", "synthetic"))


def register(subparsers) -> None:
    from echolatent.simulate.config import FORMATS

    parser = subparsers.add_parser(
        "simulate", help="simulate a synthetic echocardiography cohort with known ground truth",
        description="Simulate apical 2CH/4CH full cycles (observed and clean label maps, B-mode images) of a "
                    "synthetic cohort with planted group effects, and write them with the truth tables. "
                    "Command-line options override the --config file, which overrides the defaults.")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--patients", type=int, help="number of patients (default 60)")
    parser.add_argument("--seed", type=int, help="random seed (default 0)")
    parser.add_argument("--format", choices=FORMATS, default="store",
                        help="store (HDF5, default), camus-nifti (CAMUS 2023 layout) or camus-mhd (2019 layout)")
    parser.add_argument("--frames", type=int, help="frames per full cardiac cycle (default 20)")
    parser.add_argument("--rows", type=int, help="image rows (default 256)")
    parser.add_argument("--cols", type=int, help="image columns (default 256)")
    parser.add_argument("--spacing", type=float, nargs=2, metavar=("H", "W"), help="pixel size in mm (default 0.75 0.75)")
    parser.add_argument("--no-images", action="store_true", help="skip the B-mode images (masks only)")
    parser.add_argument("--config", type=Path,
                        help="YAML file with SimulationConfig fields (at the top level, or under 'simulation' "
                             "or 'cohort: synthetic')")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (the output does not depend on it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    parser.set_defaults(func=run)


def load_config_file(path) -> dict:
    """The simulator settings of a YAML file (see ``CONFIG_KEYS``)."""
    import yaml

    from echolatent.io.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of simulator settings")
    for keys in CONFIG_KEYS:
        node = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return dict(node)
    return data


def build_config(args):
    """SimulationConfig from defaults < --config file < command-line options."""
    from echolatent.simulate.config import SimulationConfig

    data = load_config_file(args.config) if args.config else {}
    overrides = {"n_patients": args.patients, "seed": args.seed, "frames": args.frames}
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    image = dict(data.get("image") or {})
    for key, value in (("rows", args.rows), ("cols", args.cols),
                       ("spacing", None if args.spacing is None else list(args.spacing))):
        if value is not None:
            image[key] = value
    if args.no_images:
        image["images"] = False
    if image:
        data["image"] = image
    return SimulationConfig.from_dict(data)


def run(args) -> int:
    from echolatent.simulate import write_cohort
    from echolatent.simulate.config import ConfigError

    try:
        config = build_config(args)
    except ConfigError as err:
        print(f"echolatent simulate: error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"echolatent simulate: error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2

    def progress(done, total):
        if not args.quiet and (done == total or done % 10 == 0):
            print(f"simulated {done}/{total} patients", file=sys.stderr)

    try:
        write_cohort(config, args.out, args.format, n_jobs=args.jobs, overwrite=args.overwrite, progress=progress)
    except FileExistsError as err:
        print(f"echolatent simulate: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"wrote {config.n_patients} patients ({args.format}) to {args.out}")
    return 0
