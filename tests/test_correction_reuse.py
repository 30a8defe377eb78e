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


def test_signed_distance_inside_a_region_against_the_border_or_filling_the_map():
    """Inside distances come from the region's box one pixel wider (clamped to the map): a
    region against the map's edge, in a corner, or everything but one pixel."""
    shapes = []
    for window in ((slice(0, 30), slice(10, 60)), (slice(50, 97), slice(0, 131)), (slice(0, 97), slice(120, 131)),
                   (slice(0, 12), slice(0, 9)), (slice(40, 41), slice(0, 131))):
        inside = np.zeros((97, 131), bool)
        inside[window] = True
        shapes.append(inside)
    l_shape = np.zeros((97, 131), bool)
    l_shape[10:90, 20:30] = l_shape[80:90, 20:120] = True
    shapes.append(l_shape)
    almost_all = np.ones((97, 131), bool)
    almost_all[60, 7] = False
    shapes.append(almost_all)
    for inside in shapes:
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


# --------------------------------------------------------------------------- reuse of the repair's measurements
def test_the_table_after_columns_equal_a_measurement_from_scratch(corrected, tiny_cohort):
    """``anatomical_errors_after`` and the Dice after, measured again on the written output:
    the table reuses the repair's criteria of its rebuilt frames and the Dice before of the
    frames it leaves as they were."""
    from echolatent.models.config import CLASS_NAMES
    from echolatent.models.quality import dice_scores
    from echolatent.shape.criteria import criteria_matrix, failed_criteria
    from echolatent.io.shards import iter_shard

    out, _, run = corrected
    table = run("scratch", out / "criteria.parquet").set_index(["patient_id", "view"])
    assert table["corrected"].any()
    truth = _masks(tiny_cohort / "cohort" / "truth" / "shard-0.h5")
    spacings = {(s.patient_id, s.view): s.spacing("mask_native")
                for s in iter_shard(tiny_cohort / "cohort" / "shard-0.h5", ("mask_native",))}
    labels = (LV, MYO, LA)
    for key, masks in _masks(out / "scratch.h5").items():
        failed = failed_criteria(criteria_matrix(masks, spacings[key], labels=labels), labels=labels)
        assert table.loc[key, "anatomical_errors_after"] == int(failed.any(axis=1).sum()), key
        dice = dice_scores(masks, truth[key], labels)
        with np.errstate(all="ignore"):
            per_class = np.nanmean(dice, axis=0)
        for label, value in zip(labels, per_class):
            np.testing.assert_equal(table.loc[key, f"dice_{CLASS_NAMES[label]}_after"], value)
        np.testing.assert_equal(table.loc[key, "dice_after"], np.nanmean(dice))


def test_the_output_criteria_reuse_the_repairs_measurement_of_its_rebuilt_frame():
    """A cut through the wall takes the smallest valid edit, whose criteria the repair measured:
    they are carried out (``measured``) and equal a measurement from scratch."""
    from conftest import KnownModel, clean_scales, image_arrays, image_thresholds, sequence
    from echolatent.shape.criteria import criteria_matrix
    from echolatent.temporal.correction.sequences import correct_sequences

    references = [sequence(clean_scales(20, phase)) for phase in (0.0, 0.3, 0.6, 0.9)]
    thresholds = image_arrays(image_thresholds(references))
    clean = sequence(clean_scales(20, 0.45))
    broken = clean.copy()
    rows, cols = np.mgrid[0:48, 0:48]
    broken[5][(clean[5] == MYO) & (rows >= 20) & (rows <= 21) & (cols < 24)] = BACKGROUND
    spacing = (1.0, 1.0)
    r = correct_sequences(KnownModel(), [broken], constraint=None, spacings=[spacing], image=thresholds)[0]
    assert r.method == "repair" and r.replaced[5]
    # frame 5 is known from the repair (not from its starting point), the others from the start
    np.testing.assert_array_equal(r.measured[5], r.masks[5])
    assert (r.measured[5] != r.start[5]).any()
    np.testing.assert_array_equal(np.delete(r.measured, 5, 0), np.delete(r.start, 5, 0))
    scratch = criteria_matrix(r.measured, spacing)
    np.testing.assert_array_equal(r.measured_criteria, scratch)
    np.testing.assert_array_equal(criteria_matrix(r.masks, spacing, known=(r.measured, r.measured_criteria)),
                                  criteria_matrix(r.masks, spacing))


def test_the_dice_after_takes_the_before_rows_of_unchanged_frames_nan_included():
    from echolatent.models.quality import dice_scores
    from echolatent.temporal.correction.shard import _dice_after

    clean = np.zeros((3, 12, 12), np.uint8)
    clean[:, 2:8, 3:9] = LV
    clean[:, 8:10, 3:9] = MYO                 # no LA anywhere: NaN Dice where the maps have none either
    before = clean.copy()
    before[0, 2:4] = BACKGROUND
    before[1, 2:5] = BACKGROUND
    after = before.copy()
    after[1] = clean[1]                       # a repaired frame
    after[2, 10, 3:6] = LA                    # an LA appears: its Dice is 0, no longer NaN
    labels = (LV, MYO, LA)
    got = _dice_after(dice_scores(before, clean, labels), before, after, clean, labels)
    truth = dice_scores(after, clean, labels)
    np.testing.assert_array_equal(got, truth)  # NaN where NaN
    assert np.isnan(got[0, 2]) and got[2, 2] == 0.0 and got[1, 0] == 1.0


def test_recheck_changed_measures_each_distinct_frame_once_and_gives_the_same_curves():
    from conftest import clean_scales, image_arrays, image_thresholds, render, sequence
    from echolatent.shape.attributes import shape_attributes
    from echolatent.temporal.correction.consistency import image_spec, recheck_changed

    base = sequence(clean_scales(10))
    detector = image_spec(image_arrays(image_thresholds([base])), 0.0, "deviation", None)
    spacing = (1.0, 1.0)
    curves = shape_attributes(base, spacing)[list(detector.names)].to_numpy(np.float64)
    first, second = base.copy(), base.copy()
    first[3], first[4] = render(1.1), render(0.9)
    second[4], second[5] = render(0.9), render(1.2)   # frame 4 as in `first`, frame 5 new
    cache = {}
    recheck_changed(curves, base, first, spacing, detector, cache=cache)
    got, check = recheck_changed(curves, base, second, spacing, detector, cache=cache)
    assert len(cache) == 3
    truth = shape_attributes(second, spacing)[list(detector.names)].to_numpy(np.float64)
    np.testing.assert_array_equal(got, truth)
    np.testing.assert_array_equal(check["frame_inconsistent"], detector.check(truth)["frame_inconsistent"])


def test_repair_frames_rebuilds_a_frame_again_when_its_decoding_changes():
    """The rebuilt frames kept across calls (``built``) serve only a call that would rebuild them alike."""
    from conftest import clean_scales, render, sequence
    from echolatent.temporal.correction.rebuild import repair_frames
    from echolatent.temporal.correction.regions import REGIONS

    scales = clean_scales(7)
    base = preclean(sequence(scales))
    decoded_mu = {t: render(s * 1.03) for t, s in enumerate(scales)}
    regions = np.zeros((7, 3), bool)
    regions[3, REGIONS.index("lv")] = regions[3, REGIONS.index("epi")] = True
    built = {}
    for weight in (1.0, 0.0):
        outputs = []
        for factor in (1.1, 0.9, 1.1):
            decoded_z = {3: render(scales[3] * factor)}
            got = repair_frames(base, decoded_mu, decoded_z, regions, decoder_weight=weight, built=built)
            fresh = repair_frames(base, decoded_mu, decoded_z, regions, decoder_weight=weight)
            np.testing.assert_array_equal(got, fresh)
            outputs.append(got)
        # the decoding matters with a decoder weight, and is not read without one
        assert (outputs[0] != outputs[1]).any() == (weight != 0)
    assert len(built) == 3   # the third call of each weight, and the second without one, were reused
