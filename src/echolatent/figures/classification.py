"""ROC curves of the group classification: latent codes vs the clinical baseline vs both.

Drawn from ``results/stats/{classification,classification_comparisons,roc}.tsv``
(:mod:`echolatent.stats.classification`): one panel per model, with the clinical baseline, the
model's latent codes and both; the legend gives each AUC with its 95 % patient-bootstrap
interval, the panel title the DeLong test of latent minus clinical AUC on the same patients.
A study without a latent model has one panel, the clinical baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from echolatent.figures.style import COLUMN, FEATURE_COLOURS, OKABE_ITO, PAGE, new_figure, styled

__all__ = ["roc_curves", "feature_sets", "delong"]

CLINICAL = "clinical"


def feature_sets(names) -> dict[str, dict[str, str]]:
    """Model -> {"clinical", "latent", "both"} -> feature set name, from the names of ``classification.tsv``
    (``clinical``, ``latent.{model}``, ``clinical+latent.{model}``); key "" when there is no latent set."""
    names = [str(n) for n in names]
    models = sorted({n.split("latent.", 1)[1] for n in names if n.startswith("latent.")})
    sets = {}
    for model in models:
        sets[model] = {kind: name for kind, name in (("clinical", CLINICAL), ("latent", f"latent.{model}"),
                                                     ("both", f"{CLINICAL}+latent.{model}")) if name in names}
    if not sets:
        sets[""] = {"clinical": CLINICAL} if CLINICAL in names else {}
    return sets


def delong(comparisons: pd.DataFrame, baseline: str, other: str) -> tuple[float, float] | None:
    """``(delta_auc, p)`` of ``other`` minus ``baseline`` from ``classification_comparisons.tsv``; None when absent."""
    if comparisons is None or comparisons.empty:
        return None
    for a, b, sign in ((baseline, other, 1.0), (other, baseline, -1.0)):
        row = comparisons[(comparisons["features_a"] == a) & (comparisons["features_b"] == b)]
        if len(row):
            return sign * float(row["delta_auc"].iloc[0]), float(row["p"].iloc[0])
    return None


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


@styled
def roc_curves(classification: pd.DataFrame, comparisons: pd.DataFrame, roc: pd.DataFrame, *, groups=()):
    """ROC curves per model: clinical baseline, latent codes, both (AUC [95 % CI] in the legend, DeLong p in the title).

    ``groups``: ``(control, case)`` for the axis note (a case is the positive class).
    """
    sets = feature_sets(classification["features"])
    models = list(sets)
    width = COLUMN if len(models) == 1 else PAGE
    fig = new_figure(width, (COLUMN + 0.5) if len(models) <= 2 else PAGE / len(models) + 1.0)
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)).ravel()
    by_name = classification.set_index("features")
    names = {"clinical": "Clinical", "latent": "Latent", "both": "Clinical + latent"}
    for ax, model in zip(axes, models):
        ax.plot([0, 1], [0, 1], color=OKABE_ITO["grey"], linestyle="--", linewidth=0.7, label="chance")
        for kind, name in sets[model].items():
            points = roc[roc["features"] == name].sort_values(["fpr", "tpr"])
            row = by_name.loc[name]
            text = f"{names[kind]}: AUC {row['auc']:.2f} [{row['auc_ci_low']:.2f}, {row['auc_ci_high']:.2f}]"
            ax.step(points["fpr"], points["tpr"], where="post", color=FEATURE_COLOURS[kind], label=text,
                    linewidth=1.2)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("1 − specificity (false-positive rate)")
        ax.set_ylabel("Sensitivity (true-positive rate)")
        test = delong(comparisons, sets[model].get("clinical", CLINICAL), sets[model].get("latent", "")) \
            if "latent" in sets[model] else None
        heading = f"model {model}" if model else "clinical baseline"
        if test is not None:
            heading += f"\nΔAUC latent − clinical {test[0]:+.3f}, DeLong {_p_text(test[1])}"
        ax.set_title(heading, fontsize=7)
        ax.legend(loc="lower right", fontsize=6, handlelength=1.5)
    n = classification["n"].max() if "n" in classification else None
    cases = f" ({groups[1]} vs {groups[0]})" if len(groups) >= 2 else ""
    fig.suptitle(f"Classification of the group{cases}\ncross-validated"
                 + (f", n = {int(n)} patients" if n is not None and np.isfinite(n) else ""), fontsize=8)
    return fig
