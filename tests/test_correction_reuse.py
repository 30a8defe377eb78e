"""The temporal correction's shortcuts (issue 18) change nothing but its speed.

Each shortcut is checked against an independent truth: scipy's distance transforms for the
signed distances, hand-drawn masks for the pre-cleaning's box, and the correction run
without the anatomy stage's table for the reuse of the input's criteria.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from echolatent.labels import BACKGROUND, LA, LV, MYO
from echolatent.temporal.correction.regions import signed_distance
from echolatent.temporal.preclean import preclean


def test_signed_distance_equals_scipys_two_transforms_to_the_bit():
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:97, 0:131]
    for k in range(25):
        inside = ((rows - rng.uniform(20, 70)) / rng.uniform(5, 40)) ** 2 + \
                 ((cols - rng.uniform(20, 110)) / rng.uniform(5, 50)) ** 2 < 1
        if k % 3 == 0:
            inside ^= rng.random(inside.shape) < 0.02  # specks and pinholes: many boundaries
        if not inside.any() or inside.all():
            continue
        truth = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
        np.testing.assert_array_equal(signed_distance(inside), truth)


def test_preclean_fills_a_hole_but_not_a_cavity_open_through_the_box_margin():
    """The cleaning works inside the box of the labelled pixels (plus one pixel): a background
    region opening onto that margin is not a hole, one enclosed is."""
    frame = np.zeros((30, 34), np.uint8)
    frame[8:19, 9:20] = MYO
    frame[10:17, 11:18] = BACKGROUND      # cavity of a closed ring: a MYO hole, filled
    frame[8:19, 22:31] = LV
    frame[8:17, 24:29] = BACKGROUND       # a notch opening on row 8, the top of the box: kept
    frame[25, 3] = LA                     # widens the box to the left and down
    expected = frame.copy()
    expected[10:17, 11:18] = MYO
    np.testing.assert_array_equal(preclean(frame), expected)
    # the same frame anywhere on a larger canvas: the same result there
    canvas = np.zeros((2, 60, 70), np.uint8)
    canvas[0, 5:35, 20:54] = frame
    canvas[1, 30:60, 0:34] = frame        # this one touches the canvas border
    cleaned = preclean(canvas)
    np.testing.assert_array_equal(cleaned[0, 5:35, 20:54], expected)
    np.testing.assert_array_equal(cleaned[1, 30:60, 0:34], expected)
    assert not cleaned[0][np.ones((60, 70), bool) & ~np.pad(np.ones((30, 34), bool), ((5, 25), (20, 16)))].any()


@pytest.fixture(scope="module")
def corrected(tiny_cohort, tmp_path_factory):
    """The tiny cohort corrected without, and with, the anatomy stage's table of its masks."""
    from echolatent.io.tables import write_table
    from echolatent.stages.shape import shard_anatomy_tables
    from echolatent.stages.temporal import correction_stage, image_thresholds_stage, latent_thresholds_stage
    from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES

    root, out = tiny_cohort, tmp_path_factory.mktemp("reuse")
    cohort, model = root / "cohort", root / "model"
    image_thresholds_stage([root / "attributes-input.parquet"], cohort / "patients.tsv", reference="observed",
                           splits=["train"], names=TEMPORAL_ATTRIBUTES, frames=cohort / "truth" / "frames.tsv",
                           out=out / "thresholds.tsv")
    latent_thresholds_stage(model / "checkpoint.pt", model / "latent_bounds.tsv", out / "thresholds.tsv",
                            mode="image", device="cpu", out=out / "latent.tsv")
    criteria, _ = shard_anatomy_tables(cohort / "shard-0.h5")
    write_table(criteria, out / "criteria.parquet")

    def run(name, table=None):
        return correction_stage(model / "checkpoint.pt", cohort / "shard-0.h5", out / "thresholds.tsv",
                                out / "latent.tsv", settings={}, truth_shard=cohort / "truth" / "shard-0.h5",
                                out_table=out / f"{name}.tsv", out_h5=out / f"{name}.h5", device="cpu",
                                criteria=table)

    return out, criteria, run


def _masks(path):
    from echolatent.io.shards import iter_shard

    return {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(path, ("mask_native",))}


def test_the_input_criteria_table_changes_nothing_but_the_work(corrected):
    out, _, run = corrected
    plain, reused = run("plain"), run("reused", out / "criteria.parquet")
    assert plain["corrected"].any()  # the tiny cohort has something to repair
    pd.testing.assert_frame_equal(plain, reused, check_exact=True)
    before, after = _masks(out / "plain.h5"), _masks(out / "reused.h5")
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_the_input_criteria_table_is_what_the_correction_reads(corrected):
    """A frame the table says fails a criterion counts as failing: the table is used, not re-measured."""
    out, criteria, run = corrected
    plain = run("plain-2")
    valid = criteria[~criteria["anatomical_errors"]]
    target = valid.iloc[0]
    edited = criteria.copy()
    edited.loc[(edited["patient_id"] == target["patient_id"]) & (edited["view"] == target["view"])
               & (edited["frame"] == target["frame"]), "holes_in_lv"] = 7.0
    from echolatent.io.tables import write_table

    write_table(edited, out / "edited.parquet")
    told = run("told", out / "edited.parquet")
    row = (told["patient_id"] == target["patient_id"]) & (told["view"] == target["view"])
    assert int(told.loc[row, "anatomical_errors_before"].iloc[0]) == \
        int(plain.loc[row, "anatomical_errors_before"].iloc[0]) + 1


def test_a_criteria_table_without_its_columns_is_refused_naming_the_file(corrected):
    out, criteria, run = corrected
    from echolatent.io.tables import write_table

    write_table(criteria.drop(columns=["holes_in_lv"]), out / "broken.parquet")
    with pytest.raises(ValueError, match=r"broken\.parquet.*holes_in_lv"):
        run("broken", out / "broken.parquet")
    assert not (out / "broken.tsv").exists() and not (out / "broken.h5").exists()
