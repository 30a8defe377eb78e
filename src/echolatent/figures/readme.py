"""The README's example figures: small PNG copies of a few figures of a finished run.

    python -m echolatent.figures.readme results/figures docs/figures   (or: make readme-figures)

The README shows what a study gives before anyone runs it; the copies are downsized so that
the repository stays small. Regenerate them after a default run and ``make figures``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from echolatent.io.atomic import atomic_path

__all__ = ["README_FIGURES", "readme_figures"]

#: Figure under ``results/figures/`` -> its copy under ``docs/figures/``.
README_FIGURES = {
    "stats/forest_attributes.png": "forest_attributes.png",
    "stats/curves_attributes.png": "curves_attributes.png",
    "latent/arvae/traversals.png": "traversals.png",
}


def readme_figures(figures_dir, out_dir, *, width_px: int = 900, figures=None) -> list[Path]:
    """Write width-limited PNG copies of ``figures`` (default :data:`README_FIGURES`) into ``out_dir``.

    Raises
    ------
    FileNotFoundError
        A figure is missing (run the workflow and ``snakemake figures`` first).
    """
    figures_dir, out_dir = Path(figures_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source, name in (figures or README_FIGURES).items():
        path = figures_dir / source
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such figure; run the workflow and `snakemake figures` first")
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.width > width_px:
                image = image.resize((width_px, round(image.height * width_px / image.width)), Image.LANCZOS)
            # a 128-colour palette: the figures are flat colours and lines, so the copy stays small
            image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
            with atomic_path(out_dir / name) as tmp:
                image.save(tmp, format="PNG", optimize=True)
        written.append(out_dir / name)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures_dir", help="results/figures of a finished run")
    parser.add_argument("out_dir", help="where the copies go (docs/figures)")
    parser.add_argument("--width", type=int, default=900, help="largest width in pixels")
    args = parser.parse_args(argv)
    for path in readme_figures(args.figures_dir, args.out_dir, width_px=args.width):
        print(path)


if __name__ == "__main__":
    main()
