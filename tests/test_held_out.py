"""Nothing that selects or corrects looks at what it must not see (issue 12, item 8).

* Corrected masks are bit-identical with and without the synthetic truth present: the truth
  only feeds the evaluation columns.
* Patients outside the reference splits change neither the image thresholds, nor the latent
  thresholds, nor the latent bounds and weights of training.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pandas as pd

from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES


def split_members(root, splits):
    patients = pd.read_csv(root / "cohort" / "patients.tsv", sep="\t", dtype={"patient_id": str})
    return set(patients.loc[patients["split"].isin(splits), "patient_id"])


def scramble_outside(shard, keep: set, out):
    """A copy of a cohort shard whose sequences of patients outside ``keep`` are scrambled."""
    shutil.copyfile(shard, out)
    rng = np.random.default_rng(0)
    with h5py.File(out, "r+") as h5:
        for patient in h5:
            if patient in keep:
                continue
            for view in h5[patient]:
                for name in ("mask_native", "mask"):
                    data = h5[patient][view][name]
                    data[...] = rng.permutation(data[()].reshape(-1)).reshape(data.shape)
    return out


def test_corrected_masks_do_not_depend_on_the_truth(tiny_cohort, tmp_path):
    from echolatent.io.shards import iter_shard
    from echolatent.stages.temporal import correction_stage, image_thresholds_stage, latent_thresholds_stage

    root = tiny_cohort
    cohort, model = root / "cohort", root / "model"
    image_thresholds_stage([root / "attributes-input.parquet"], cohort / "patients.tsv", reference="input",
                           splits=["train"], names=TEMPORAL_ATTRIBUTES, out=tmp_path / "image.tsv")
    latent_thresholds_stage(model / "checkpoint.pt", model / "latent_bounds.tsv", tmp_path / "image.tsv",
                            mode="image", device="cpu", out=tmp_path / "latent.tsv")
    runs = {}
    for name, truth in (("with", {"truth_shard": cohort / "truth" / "shard-0.h5",
                                  "frames": cohort / "truth" / "frames.tsv"}), ("without", {})):
        table = correction_stage(model / "checkpoint.pt", cohort / "shard-0.h5", tmp_path / "image.tsv",
                                 tmp_path / "latent.tsv", settings={"max_rounds": 3}, out_table=tmp_path / f"{name}.tsv",
                                 out_h5=tmp_path / f"{name}.h5", device="cpu", **truth)
        masks = {(s.patient_id, s.view): s.arrays["mask_native"] for s in iter_shard(tmp_path / f"{name}.h5",
                                                                                       ("mask_native",))}
        runs[name] = (table, masks)
    (with_truth, masks_with), (without, masks_without) = runs["with"], runs["without"]
    assert masks_with.keys() == masks_without.keys() and len(masks_with) == 12
    for key in masks_with:
        np.testing.assert_array_equal(masks_with[key], masks_without[key], err_msg=str(key))
    # the truth only adds evaluation columns; every column both have is identical
    common = [c for c in without.columns if c in with_truth.columns]
    pd.testing.assert_frame_equal(with_truth[common], without[common])
    assert with_truth["replaced_frames"].sum() > 0  # something was corrected


def test_thresholds_ignore_patients_outside_the_reference_splits(tiny_cohort, tmp_path):
    from echolatent.stages.temporal import image_thresholds_stage, latent_thresholds_stage

    root = tiny_cohort
    cohort, model = root / "cohort", root / "model"
    train = split_members(root, ["train"])
    assert 0 < len(train) < 6
    attributes = pd.read_parquet(root / "attributes-input.parquet")
    changed = attributes.copy()
    outside = ~changed["patient_id"].isin(train)
    numeric = [c for c in changed.columns if c not in ("patient_id", "view", "frame", "frame_pos")
               and pd.api.types.is_float_dtype(changed[c])]
    changed.loc[outside, numeric] = changed.loc[outside, numeric] * 3.0 + 7.0
    changed.to_parquet(tmp_path / "changed.parquet")
    results = [image_thresholds_stage([path], cohort / "patients.tsv", reference="input", splits=["train"],
                                      names=TEMPORAL_ATTRIBUTES, out=tmp_path / f"image-{k}.tsv")
               for k, path in enumerate((root / "attributes-input.parquet", tmp_path / "changed.parquet"))]
    pd.testing.assert_frame_equal(*results)

    scrambled = scramble_outside(cohort / "shard-0.h5", train, tmp_path / "scrambled.h5")
    latent = [latent_thresholds_stage(model / "checkpoint.pt", model / "latent_bounds.tsv", tmp_path / "image-0.tsv",
                                      mode="derived", reference="input", reference_shards=[shard],
                                      cohort_shards=[shard], patients=cohort / "patients.tsv", splits=["train"],
                                      device="cpu") for shard in (cohort / "shard-0.h5", scrambled)]
    pd.testing.assert_frame_equal(*latent)


def test_training_ignores_the_test_split(tiny_cohort, tmp_path):
    import torch

    from echolatent.stages.train import train_on_cohort

    root = tiny_cohort
    cohort = root / "cohort"
    scrambled = scramble_outside(cohort / "shard-0.h5", split_members(root, ["train", "val"]),
                                 tmp_path / "scrambled.h5")
    training = {"model": {"n_classes": 4, "input_size": 32, "blocks": 2, "init_channels": 4, "latent_dim": 10},
                "loss": {"kind": "ar-vae"}, "epochs": 2, "batch_size": 16, "device": "cpu", "num_threads": 1}
    for name, shard in (("original", cohort / "shard-0.h5"), ("scrambled", scrambled)):
        train_on_cohort([shard], cohort / "patients.tsv", training, list(TEMPORAL_ATTRIBUTES),
                        out_dir=tmp_path / name)
    assert (tmp_path / "original/latent_bounds.tsv").read_text() == (tmp_path / "scrambled/latent_bounds.tsv").read_text()
    a = torch.load(tmp_path / "original/checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "scrambled/checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
