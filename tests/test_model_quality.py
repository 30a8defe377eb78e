"""Model quality per split: values computed by hand on a small latent table."""

import numpy as np
import pandas as pd
import pytest

from echolatent.models.quality import reconstruction_quality, with_split


def test_quality_per_split_by_frame_and_by_patient():
    patients = pd.DataFrame({"patient_id": ["a", "b", "c"], "split": ["train", "train", "test"]})
    latents = pd.DataFrame({
        "patient_id": ["a", "a", "a", "b", "c", "c"],
        "view": ["2CH", "2CH", "4CH", "2CH", "2CH", "2CH"],
        "frame": [0, 1, 0, 0, 0, 1],
        "dice_lv": [0.9, 0.8, 0.7, 0.6, 1.0, 0.5],
        "dice_mean": [0.9, 0.8, 0.7, 0.6, 1.0, 0.5],
    })
    q = reconstruction_quality(latents, patients).set_index("split")
    assert list(q.index) == ["train", "val", "test", "all"]
    assert q.loc["train", ["n_patients", "n_sequences", "n_frames"]].tolist() == [2, 3, 4]
    assert q.loc["train", "dice_lv"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.6) / 4)
    # patient a: mean 0.8; patient b: 0.6 -> 0.7
    assert q.loc["train", "dice_mean_by_patient"] == pytest.approx(0.7)
    assert q.loc["test", "dice_lv"] == pytest.approx(0.75)
    assert q.loc["val", "n_frames"] == 0 and np.isnan(q.loc["val", "dice_lv"])
    assert q.loc["all", "n_frames"] == 6


def test_a_patient_outside_the_cohort_is_an_error():
    with pytest.raises(ValueError, match="'z' is not in the cohort"):
        with_split(pd.DataFrame({"patient_id": ["z"]}), pd.DataFrame({"patient_id": ["a"], "split": ["train"]}))
