"""Frame positions in the cardiac phase (``frame_pos``: 0 at ED, 1 at ES).

Every expected vector below is written by hand from the definition, never taken from
``frame_positions`` itself:

* full cycles are periodic with period ``n`` (frame ``n`` would be the next ED): from ED
  the position rises linearly to 1 at ES over the ``(es - ed) mod n`` frames of systole,
  then falls linearly back towards 0 over the ``n - systole`` frames of diastole; frames
  before ED belong to the previous cycle, wherever the sequence starts;
* half cycles rise linearly from 0 at ED to 1 at ES (``ed < es``); frames outside ED..ES
  are clipped to 0 / 1.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from echolatent.ingest.cohort import ingest_cohort
from echolatent.ingest.shard import check_record, frame_positions
from echolatent.stages.ingest import open_source
from echolatent.io import InputError, camus
from echolatent.io.itk import write_sequence
from echolatent.io.sources import SequenceRecord

# (n, ed, es) -> hand-computed positions; systole S = (es - ed) mod n frames, diastole n - S.
FULL_CASES = {
    # sequence starts at ED (TED-like): S = 4, D = 4
    (8, 0, 4): [0, 1 / 4, 2 / 4, 3 / 4, 1, 3 / 4, 2 / 4, 1 / 4],
    # ED mid-sequence, ED < ES: S = 2, D = 4; frames 0, 1 are the end of the previous diastole
    (6, 2, 4): [2 / 4, 1 / 4, 0, 1 / 2, 1, 3 / 4],
    # the example, ES before ED: S = (5 - 15) mod 20 = 10, D = 10
    (20, 15, 5): [.5, .6, .7, .8, .9, 1.0, .9, .8, .7, .6, .5, .4, .3, .2, .1, 0, .1, .2, .3, .4],
    # ES before ED, unequal phases: S = (1 - 8) mod 10 = 3, D = 7
    (10, 8, 1): [2 / 3, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7, 0, 1 / 3],
    # ES before ED: S = 3, D = 3
    (6, 4, 1): [2 / 3, 1, 2 / 3, 1 / 3, 0, 1 / 3],
    # ES is frame 0: S = 3, D = 3
    (6, 3, 0): [1, 2 / 3, 1 / 3, 0, 1 / 3, 2 / 3],
    # ED = 0 and ES = n - 1: the whole sequence is systole
    (5, 0, 4): [0, 1 / 4, 2 / 4, 3 / 4, 1],
    # ES = n - 1 with ED mid-sequence: S = 3, D = 3
    (6, 2, 5): [2 / 3, 1 / 3, 0, 1 / 3, 2 / 3, 1],
    # ED = n - 1 and ES = 0: S = 1, D = 4
    (5, 4, 0): [1, 3 / 4, 2 / 4, 1 / 4, 0],
    # two frames
    (2, 0, 1): [0, 1],
    (2, 1, 0): [1, 0],
}

HALF_CASES = {
    (5, 0, 4): [0, 1 / 4, 2 / 4, 3 / 4, 1],
    (6, 1, 4): [0, 0, 1 / 3, 2 / 3, 1, 1],  # outside ED..ES: clipped
    (3, 0, 1): [0, 1, 1],
}


@pytest.mark.parametrize(("n", "ed", "es"), list(FULL_CASES))
def test_full_cycle_positions_are_periodic_whatever_the_order_of_ed_and_es(n, ed, es):
    pos = frame_positions(n, ed, es, "full")
    assert pos.dtype == np.float32 and pos.shape == (n,)
    np.testing.assert_allclose(pos, FULL_CASES[n, ed, es], atol=1e-6)
    assert pos[ed] == 0.0 and pos[es] == 1.0


@pytest.mark.parametrize(("n", "ed", "es"), list(HALF_CASES))
def test_half_cycle_positions_rise_from_ed_to_es(n, ed, es):
    np.testing.assert_allclose(frame_positions(n, ed, es, "half"), HALF_CASES[n, ed, es], atol=1e-6)


def test_full_cycle_positions_follow_a_rotation_of_the_sequence():
    """Starting the same periodic cycle k frames later rotates the positions by k."""
    n = 7
    for ed in range(n):
        for es in range(n):
            if ed == es:
                continue
            base = frame_positions(n, ed, es, "full")
            for k in range(1, n):
                np.testing.assert_allclose(frame_positions(n, (ed + k) % n, (es + k) % n, "full"),
                                           np.roll(base, k), atol=1e-6)


@pytest.mark.parametrize(("n", "ed", "es", "cycle"), [
    (6, 4, 1, "half"),   # a half cycle stored ES->ED must be reversed by its reader first
    (6, 2, 2, "full"),   # ED and ES the same frame
    (6, 2, 2, "half"),
    (6, 0, 6, "full"),   # ES outside the sequence
    (6, -1, 3, "full"),
    (6, 0, 3, "quarter"),
])
def test_impossible_positions_raise(n, ed, es, cycle):
    with pytest.raises(ValueError):
        frame_positions(n, ed, es, cycle)


def test_check_record_rejects_a_half_cycle_with_es_before_ed():
    mask = np.zeros((5, 4, 4), np.uint8)
    record = SequenceRecord(patient_id="P1", view="4CH", mask=mask, image=None, spacing=(1.0, 1.0), ed=3, es=1,
                            cycle="half")
    with pytest.raises(InputError, match=r"half cycle.*ED=3.*ES=1"):
        check_record(record)
    full = SequenceRecord(patient_id="P1", view="4CH", mask=mask, image=None, spacing=(1.0, 1.0), ed=3, es=1,
                          cycle="full")
    assert check_record(full).shape == (5, 4, 4)


# ----------------------------------------------------------------------------- end to end
def cycle_masks(n: int, ed: int, es: int, size: int = 24) -> np.ndarray:
    """An LV disc (1) in a MYO ring (2), largest at ED and smallest at ES, periodic with period n."""
    rows, cols = np.mgrid[0:size, 0:size]
    d2 = (rows - size / 2) ** 2 + (cols - size / 2) ** 2
    systole = (es - ed) % n
    masks = np.zeros((n, size, size), np.uint8)
    for t in range(n):
        since_ed = (t - ed) % n
        phase = since_ed / systole if since_ed <= systole else 1 - (since_ed - systole) / (n - systole)
        radius = 8 - 3 * phase
        masks[t][d2 <= (radius + 2) ** 2] = 2
        masks[t][d2 <= radius ** 2] = 1
    return masks


#: (patient, view, split, n, ed, es) of a sheet cohort whose sequences mostly start mid-cycle.
SHEET_ROWS = [
    ("P00", "2CH", "train", 10, 8, 1),
    ("P00", "4CH", "train", 20, 15, 5),
    ("P01", "2CH", "val", 6, 4, 1),
    ("P01", "4CH", "val", 5, 4, 0),
    ("P02", "2CH", "test", 8, 0, 4),
    ("P02", "4CH", "test", 6, 2, 5),
]


def write_cycle_sheet(tmp_path):
    lines = ["patient_id\tview\tmask\ted\tes\tsplit"]
    for patient, view, split, n, ed, es in SHEET_ROWS:
        name = f"data/{patient}_{view}_gt.nii.gz"
        write_sequence(tmp_path / name, cycle_masks(n, ed, es), (0.3, 0.3))
        lines.append(f"{patient}\t{view}\t{name}\t{ed}\t{es}\t{split}")
    path = tmp_path / "cohort.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def stored(out, table, patient, view):
    shard = int(table.loc[(table["patient_id"] == patient) & (table["view"] == view), "shard"].iloc[0])
    with h5py.File(out / f"shard-{shard}.h5", "r") as h5:
        group = h5[f"{patient}/{view}"]
        return group["frame_pos"][()], int(group.attrs["ed"]), int(group.attrs["es"]), group["mask_native"][()]


def test_sheet_cohort_starting_mid_cycle_stores_periodic_frame_positions(tmp_path):
    out = tmp_path / "cohort"
    table = ingest_cohort(open_source("sheet", write_cycle_sheet(tmp_path), cycle="full"), out, image_size=16,
                          n_shards=2)
    assert len(table) == len(SHEET_ROWS)
    for patient, view, _, n, ed, es in SHEET_ROWS:
        frame_pos, stored_ed, stored_es, mask = stored(out, table, patient, view)
        np.testing.assert_allclose(frame_pos, FULL_CASES[n, ed, es], atol=1e-6, err_msg=f"{patient} {view}")
        assert (stored_ed, stored_es) == (ed, es)
        row = table[(table["patient_id"] == patient) & (table["view"] == view)].iloc[0]
        assert (row["n_frames"], row["ed"], row["es"]) == (n, ed, es)
        # the stored frames are the source frames, in order: largest LV at ED, smallest at ES
        lv_area = (mask == 1).sum(axis=(1, 2))
        assert lv_area.argmax() == ed and lv_area.argmin() == es


def test_half_cycles_of_a_sheet_cohort_starting_mid_cycle(tmp_path):
    """ED..ES is cut where ES follows ED; a sequence with ES before ED holds no ED->ES run: it is reported."""
    out = tmp_path / "half"
    table = ingest_cohort(open_source("sheet", write_cycle_sheet(tmp_path), cycle="half"), out, image_size=16,
                          on_bad_sequence="skip")
    assert sorted(zip(table["patient_id"], table["view"])) == [("P02", "2CH"), ("P02", "4CH")]
    frame_pos, ed, es, mask = stored(out, table, "P02", "2CH")
    np.testing.assert_allclose(frame_pos, [0, 1 / 4, 2 / 4, 3 / 4, 1], atol=1e-6)
    assert (ed, es) == (0, 4)
    np.testing.assert_array_equal(mask, cycle_masks(8, 0, 4)[0:5])
    frame_pos, ed, es, mask = stored(out, table, "P02", "4CH")
    np.testing.assert_allclose(frame_pos, [0, 1 / 3, 2 / 3, 1], atol=1e-6)
    assert (ed, es) == (0, 3)
    np.testing.assert_array_equal(mask, cycle_masks(6, 2, 5)[2:6])
    qc = pd.read_csv(out / "qc.tsv", sep="\t")
    assert sorted(zip(qc["patient_id"], qc["view"])) == [("P00", "2CH"), ("P00", "4CH"), ("P01", "2CH"),
                                                          ("P01", "4CH")]
    assert qc["reason"].str.contains("ES before ED").all()


def test_camus_half_cycle_stored_es_to_ed_is_reversed_and_rises_from_ed(tmp_path):
    """CAMUS half sequences stored ES->ED are reversed by the reader: stored frame_pos rises 0 -> 1."""
    root = tmp_path / "CAMUS_public"
    masks = {}
    for number, patient in enumerate(("patient0001", "patient0002")):
        # frames stored from ES (smallest LV, frame 0) to ED (largest LV, frame 5)
        masks[patient] = cycle_masks(10, 5, 0)[:6]
        for view in ("2CH", "4CH"):
            write_sequence(camus.sequence_file(root, patient, view, "half", "camus-nifti", gt=True), masks[patient],
                           (0.3, 0.3), compress=True)
            camus.write_cfg(camus.cfg_file(root, patient, view, "camus-nifti"),
                            {"ED": 6, "ES": 1, "NbFrame": 6, "Sex": "F", "Age": 50 + number})
    camus.write_split_lists(root, {"patient0001": "train", "patient0002": "val"})
    out = tmp_path / "cohort"
    table = ingest_cohort(open_source("camus", root, cycle="half"), out, image_size=16)
    assert (table["ed"] == 0).all() and (table["es"] == 5).all()
    for patient in masks:
        frame_pos, ed, es, mask = stored(out, table, patient, "4CH")
        np.testing.assert_allclose(frame_pos, [0, .2, .4, .6, .8, 1], atol=1e-6)
        np.testing.assert_array_equal(mask, masks[patient][::-1])
        lv_area = (mask == 1).sum(axis=(1, 2))
        assert lv_area.argmax() == 0 and lv_area.argmin() == 5


def test_sheet_half_cycle_row_with_es_before_ed_is_refused(tmp_path):
    write_sequence(tmp_path / "p_gt.nii.gz", cycle_masks(6, 4, 1), (0.3, 0.3))
    path = tmp_path / "cohort.tsv"
    path.write_text("patient_id\tview\tmask\ted\tes\tcycle\nP00\t4CH\tp_gt.nii.gz\t4\t1\thalf\n")
    with pytest.raises(InputError, match=r"cohort.tsv: row 2: a half cycle needs ed < es, got ed=4, es=1"):
        open_source("sheet", path, cycle="half")
