"""`snakemake figures` after a finished tiny run: it plans figures only, draws every one, and the HTML
report holds them (real Snakemake runs; the report is opened in headless Chromium where it is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from matplotlib.image import imread

from conftest import REPO, snakemake
from echolatent.figures.targets import figure_targets
from echolatent.models.config import study_models
from echolatent.settings import check_section

pytestmark = pytest.mark.slow  # runs Snakemake for real (README: `pytest -m "not slow"` skips these)

# The tiny test configuration alone (the schema's defaults fill in the rest): one tiny AR-VAE, not
# also the default config's 20-epoch model, so the whole study runs in a few minutes.
CONFIG = REPO / ".test/config/config.yaml"
CONFIGS = ["--configfile", str(CONFIG)]
#: Jobs a figure must never cause once the results exist.
EXPENSIVE = ("train_vae", "encode_latents", "latent_thresholds", "temporal_correction")


def planned_jobs(stdout: str) -> dict[str, int]:
    """Rule -> count of the "Job stats" table of a dry run."""
    table = stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    jobs.pop("total", None)
    return jobs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny study run to the end (the default target), as `make demo` runs the default one."""
    root = tmp_path_factory.mktemp("figures")
    # the target first: --configfile takes several files and would swallow it
    snakemake("all", "--cores", "2", "--directory", str(root), *CONFIGS)
    return root


def test_figures_plan_no_training_encoding_or_correction(run):
    assert (run / "results/figures/cohort/flow.png").is_file()  # the default target draws them
    shutil.rmtree(run / "results/figures")  # redrawn from results/ alone
    dry = snakemake("figures", "-n", "--directory", str(run), *CONFIGS)
    jobs = planned_jobs(dry.stdout)
    assert not [rule for rule in EXPENSIVE if rule in jobs], jobs
    assert set(jobs) - {"figures"} and all(rule.startswith("figure_") or rule == "figures" for rule in jobs), jobs


def test_figures_draws_every_figure_of_the_study(run):
    snakemake("figures", "--cores", "2", "--directory", str(run), *CONFIGS)
    config = yaml.safe_load(CONFIG.read_text())
    models = study_models(config)
    expected = figure_targets(models, temporal_models=[m for m, entry in models.items() if entry["kind"] == "ar-vae"],
                              statistics=True, families=check_section(config.get("population"), "population")["families"],
                              synthetic=(config.get("cohort") or {}).get("source", "synthetic") == "synthetic")
    assert "results/figures/latent/tiny/traversals.png" in expected
    missing = [path for path in expected if not (run / path).is_file()]
    assert not missing, missing
    for path in expected:
        if path.endswith(".png"):
            grey = imread(run / path)[..., :3].mean(axis=-1)
            assert grey.std() > 0.05, f"{path} looks blank"
            assert min(grey.shape) > 300, f"{path} is smaller than 1 inch at 300 dpi"
    written = sorted(str(p.relative_to(run)) for p in (run / "results/figures").rglob("*") if p.is_file())
    assert written == sorted(expected)  # nothing the study does not have (one model: no comparison figure)
    # nothing left to do: a second run plans nothing
    again = snakemake("figures", "-n", "--directory", str(run), *CONFIGS)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_holds_the_figures_and_loads_in_a_browser(run, tmp_path):
    snakemake("figures", "--cores", "2", "--directory", str(run), *CONFIGS)  # the figures exist
    report = run / "results/report.html"
    snakemake("--report", str(report), "--directory", str(run), *CONFIGS)
    html = report.read_text(errors="replace")
    assert len(html) > 100_000
    for name in ("flow.png", "traversals.png", "forest_clinical.png", "curves_attributes.png"):
        assert name in html, name
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; `make test` tries)")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr, dom.stderr[-2000:]
    # the report's own script builds the page: its categories name the figures' stages
    assert "Population statistics" in dom.stdout, dom.stdout[:2000]
    shot = tmp_path / "report.png"
    subprocess.run([*common, "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, text=True, timeout=180, check=True)
    grey = imread(shot)[..., :3].mean(axis=-1)
    assert grey.shape == (1600, 1280) and grey.std() > 0.02  # a rendered page, not a blank one
