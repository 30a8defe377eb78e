"""The repair correction (``method="repair"``, the default): only the flagged frames, rebuilt through the latent space.

Why not smooth every frame (the TMI 2022 reference)? On cycles of about 20 frames the
snake flattens the true cardiac motion, and the decoder's own reconstruction error replaces
the input everywhere: on the synthetic cohort both cost more Dice to the clean truth than
removing a single-frame spike gains (benchmarks/README.md). The repair method intervenes
only where the anatomical criteria or the consistency metric point, and keeps the input
elsewhere:

1. **Pre-clean** the sequence (:func:`~echolatent.temporal.preclean.preclean`) and encode
   every frame (posterior mean ``mu``).
2. **Anatomically invalid frames first**, with the smallest edit: each such frame may
   rebuild the nested regions (:data:`~.regions.REGIONS`) of its failed criteria
   (:data:`~.regions.CRITERION_REGIONS`); every subset of them is tried and the valid frame that
   changes the fewest pixels is kept (a cut through the wall rebuilds the epicardium, a
   missing atrial band the heart outline, and the rest of the frame keeps the input).
3. **Plan the temporal repairs** (:func:`~.planning.plan_for`) on the attribute curves of the
   result, with the flags of the image-space check (``temporal.thresholds.detector``,
   :mod:`echolatent.temporal.detection`), so that what is repaired is what the check flags.
   The spike detector already puts each deviation on its defect's frames (a spike, not
   its neighbours; both frames of a two-frame spike), and those frames are the plan
   (:func:`~.planning.plan_flagged_repairs`). With the TMI 2022 deviation a spike at ``t``
   also makes its neighbours deviate by about half, with the opposite sign, so the plan is a
   greedy search (:func:`~.planning.plan_repairs`): the frame whose re-estimation removes the
   most excess deviation, until the curves are consistent (re-estimating ``t`` clears its
   neighbours too; a defect on two consecutive frames is taken as a pair). A frame repairs
   the regions of the attributes it is flagged for or helps (:data:`~.regions.ATTRIBUTE_REGIONS`).
4. **Re-estimate the codes** of the repaired frames from the trusted frames (those repairing
   nothing) by :func:`~.interpolation.interpolate_codes`: by default the values that minimise
   the sum of the squared deviations ``d_t`` of the metric over all frames, the trusted ones held fixed
   (the snake's smoothness term), which continues the curvature of the cycle instead of
   drawing a straight line with a kink at each trusted neighbour.
5. **Decode, calibrated on the trusted neighbours** (:func:`~.rebuild.repair_frames`). Working on
   signed distance maps ``S``
   of the nested regions (LV ⊂ EPI = LV ∪ MYO ⊂ heart = EPI ∪ LA), a repaired region is::

       S_out(t) = S(dec z_t) + a·[S(in_p) − S(dec μ_p)] + (1 − a)·[S(in_n) − S(dec μ_n)]

   with ``p < t < n`` the nearest trusted frames and ``a = (n − t)/(n − p)`` (before the first or
   after the last trusted frame: see *End frames* below). The bracket is the
   decoder's reconstruction error at the neighbours, interpolated to ``t``: it cancels the
   decoder's bias (a 64 px decoder thins the myocardium, say), so the repaired frame joins
   its input neighbours without a seam, while the shape change between them is the one the
   decoder produces along the latent path (anatomically plausible by training).
6. **Check and repeat** (up to ``repair_rounds``): the plan runs again on the repaired curves.
   When no single frame helps any more (the decoded path still bends between its trusted
   frames), the flagged block is widened by its trusted neighbour on either side (on a half
   cycle or with the reference's ends never onto the first or last frame).

End frames
----------
With the cohort's ``cycle`` (:mod:`echolatent.temporal.metric`) the first and last frames have
a deviation of their own, so they are flagged and repaired like the others:

* **full cycles** (closed, frame ``T - 1`` is frame 0 one beat later): an end frame is
  re-estimated from both sides of the cycle, its neighbours being ``T - 2`` and 1, both in
  the codes (the smooth fill minimises the periodic deviations too) and in the calibration
  (the trusted frames ``p`` and ``n`` around it along the cycle): no extrapolation at all;
* **half cycles** (ED -> ES): ED and ES are extrema of the volume curve, about zero slope, and
  the metric mirrors the sequence there. The smooth fill of a lone end frame gives
  ``1.2 z_1 - 0.2 z_2`` (between holding the inner frame and the linear extrapolation
  ``2 z_1 - z_2``), and the calibration takes the nearest trusted frame alone (a linear
  extrapolation of the decoder's error from two frames doubles their frame-to-frame noise);
* ``cycle=None`` (the reference): the ends are never flagged; a frame beyond the trusted ones
  is extrapolated linearly, as before.

A sequence still inconsistent after the rounds goes, with ``fallback="smooth"``, to the
reference smoothing of the whole sequence (:func:`~.smooth.smooth_sequences`), so no sequence
stays inconsistent.
"""

from __future__ import annotations

import contextlib

import numpy as np

from echolatent.labels import BACKGROUND as BG
from echolatent.labels import LA
from echolatent.models.inference import decode_masks, encode_mu, knows_atrium, model_input
from echolatent.shape.criteria import criteria_matrix, failed_criteria
from echolatent.shape.criteria_definitions import CRITERIA
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.consistency import LatentConstraint, image_check, image_spec, recheck_changed
from echolatent.temporal.correction.interpolation import interpolate_codes, trusted_neighbours
from echolatent.temporal.correction.planning import plan_for
from echolatent.temporal.correction.rebuild import repair_frames
from echolatent.temporal.correction.regions import CRITERION_REGIONS, REGIONS, attribute_regions_of
from echolatent.temporal.correction.result import CorrectedSequence
from echolatent.temporal.correction.smooth import smooth_sequences
from echolatent.temporal.preclean import preclean

__all__ = ["repair_sequences"]


def repair_sequences(model, masks_native: list[np.ndarray], *, constraint: LatentConstraint | None,
                     config: CorrectionConfig, spacings, image, grid: int | None = None, device="cpu",
                     cycle=None, input_criteria=None) -> list[CorrectedSequence]:
    """Correct label-map sequences by repairing their flagged frames (module docstring).

    The parameters are those of :func:`~echolatent.temporal.correction.sequences.correct_sequences`;
    ``image`` and ``spacings`` are required. ``constraint`` serves the smoothing fallback only.
    """
    if image is None or spacings is None:
        raise ValueError("method='repair' needs the image-space thresholds and the spacing of each sequence")
    thresholds = image_spec(image, config.margin, config.detector, cycle)   # the image-space check
    names = list(thresholds.names)
    known = {}
    for name in names:
        with contextlib.suppress(KeyError):
            known[name] = attribute_regions_of(name)   # pixel or physical (mm) columns
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"method='repair' does not know which regions move the attribute(s) {unknown}")
    keep_la = knows_atrium(model)
    drop_la = not keep_la and config.atrium == "drop"
    labels = (1, 2) if drop_la else (1, 2, 3)
    attribute_regions = np.array([[r in known[a] for r in REGIONS] for a in names])
    criterion_regions = np.array([[r in CRITERION_REGIONS[c] for r in REGIONS] for c in CRITERIA])

    if input_criteria is None or drop_la:  # (measured with the LA, which these masks lose)
        input_criteria = [None] * len(masks_native)
    results = []
    for masks, spacing, measured in zip(masks_native, spacings, input_criteria):
        x = np.asarray(masks, dtype=np.uint8)
        cleaned = preclean(x, keep_atrium=True)
        base = np.where(cleaned == LA, BG, cleaned).astype(np.uint8) if drop_la else cleaned
        (curve_before,), (check_before,) = image_check([x], [spacing], thresholds, cycle)
        # the input's criteria, when given, serve every frame the pre-cleaning leaves as it was
        base_criteria = criteria_matrix(base, spacing, labels=labels, known=None if measured is None else (x, measured))
        base_failed = failed_criteria(base_criteria, labels=labels)
        r = CorrectedSequence(input=x, cleaned=cleaned, masks=base, replaced=np.zeros(len(x), bool),
                              curves_before=curve_before, check_before=check_before,
                              start=base, start_criteria=base_criteria, measured=base, measured_criteria=base_criteria)
        # only the frames the pre-cleaning changed are measured again
        curve, check = recheck_changed(curve_before, x, base, spacing, thresholds, cycle)
        regions = (base_failed[:, :, None] & criterion_regions[None]).any(axis=1)
        # Frames rebuilt for an anatomical error only take the smallest valid edit among the
        # regions of their failed criteria; `regions` holds what each frame actually rebuilds.
        criteria_regions, minimal = regions.copy(), regions.any(axis=1)
        out, curve_base = base, curve
        # rebuilt frame (bytes) -> its 12 criteria: weights and rounds rebuild alike, and the
        # values of the frames the output takes are not measured again (r.measured)
        measured_frames = {}
        if regions.any() or check["sequence_inconsistent"]:
            size = x.shape[-2:]
            encoded = cleaned if keep_la else preclean(x, keep_atrium=False)
            mu = encode_mu(model, model_input(encoded, model, grid), batch_size=config.batch_size, device=device)
            decoded_mu = {}
            sdf_cache = {}  # signed distances of `base` and `decoded_mu`, reused by every round and weight
            attribute_cache = {}  # attribute rows of the rebuilt frames (bytes), for every round and weight
            built = {}  # rebuilt frames, for the rounds that rebuild a frame as before
            previous_z = {}

            def valid(frames, spacing=spacing):
                keys = [frame.tobytes() for frame in frames]
                new = [k for k, key in enumerate(keys) if key not in measured_frames]
                if new:
                    values = criteria_matrix(frames[new], spacing, labels=labels)
                    measured_frames.update((keys[k], row) for k, row in zip(new, values))
                values = np.array([measured_frames[key] for key in keys], float).reshape(len(keys), len(CRITERIA))
                return ~failed_criteria(values, labels=labels).any(axis=1)

            for round_ in range(config.repair_rounds):
                if round_ == 0 and minimal.any():
                    # First make every frame valid (their smallest edits), then plan the temporal
                    # repairs on the curves of the result: a minimal edit may leave attributes the
                    # plan would otherwise assume interpolated.
                    added = np.zeros_like(regions)
                else:
                    added = plan_for(thresholds, curve, regions, attribute_regions, widen=round_ > 0,
                                     interpolation=config.interpolation, cycle=cycle)
                if round_ and not added.any():
                    break
                minimal &= ~added.any(axis=1)
                regions = np.where(minimal[:, None], criteria_regions, regions | added | criteria_regions)
                trusted = ~regions.any(axis=1)
                if not trusted.any():
                    break  # nothing left to interpolate from: the fallback decides
                z = interpolate_codes(mu, trusted, method=config.interpolation, cycle=cycle)
                repaired = np.flatnonzero(~trusted)
                prev, nxt, _ = trusted_neighbours(trusted, cycle)
                needed = sorted((set(prev[repaired]) | set(nxt[repaired])) - set(decoded_mu))
                if needed:
                    decoded_mu.update(zip(needed, decode_masks(model, mu[needed], batch_size=config.batch_size,
                                                               device=device, size=size, grid=grid)))
                decoded_z = dict(zip(repaired, decode_masks(model, z[repaired], batch_size=config.batch_size,
                                                            device=device, size=size, grid=grid)))
                for key in [key for key in sdf_cache if key[0] == "z"]:
                    # decoded_z is this round's: a frame decoded as before keeps its signed distances
                    if key[1] not in decoded_z or not np.array_equal(decoded_z[key[1]], previous_z.get(key[1])):
                        del sdf_cache[key]
                previous_z = decoded_z
                best = None
                for weight in config.decoder_weights:  # first best: the decoder's path unless it hurts
                    candidate, rebuilt = repair_frames(
                        base, decoded_mu, decoded_z, regions, keep_atrium=keep_la, drop_atrium=drop_la,
                        decoder_weight=weight,
                        minimal=minimal, valid=valid, return_regions=True,
                        cycle=cycle, cache=sdf_cache, built=built)
                    c_curve, c_check = recheck_changed(curve_base, base, candidate, spacing, thresholds, cycle,
                                                       cache=attribute_cache)
                    score = int(c_check["frame_inconsistent"].sum())
                    if best is None or score < best[0]:
                        best = (score, candidate, c_curve, c_check, rebuilt)
                    if score == 0:
                        break
                _, out, curve, check, regions = best
                r.mu, r.z, r.rounds, r.method = mu, z, round_ + 1, "repair"
                if not check["sequence_inconsistent"]:
                    break
        r.masks, r.curves_after, r.check_after = out, curve, check
        r.measured, r.measured_criteria = _measured_output(out, base, base_criteria, measured_frames)
        r.replaced, r.repaired_regions, r.corrected = regions.any(axis=1), regions, bool(regions.any())
        results.append(r)
    if config.fallback == "smooth":
        still = [i for i, r in enumerate(results) if r.check_after["sequence_inconsistent"]]
        if still:
            redone = smooth_sequences(model, [results[i].input for i in still], constraint=constraint, config=config,
                                      spacings=[spacings[i] for i in still], image=image, grid=grid, device=device,
                                      cycle=cycle)
            for i, r in zip(still, redone):
                r.curves_before, r.check_before = results[i].curves_before, results[i].check_before
                r.method, r.repaired_regions = "smooth", results[i].repaired_regions
                results[i] = r
    return results


def _measured_output(out: np.ndarray, base: np.ndarray, base_criteria: np.ndarray, measured: dict):
    """The frames of the output whose criteria the repair knows, and those criteria.

    A frame of ``out`` takes the values the validity check measured on a rebuilt frame with
    the same bytes (same sequence, spacing and labels), else it keeps the starting point's
    frame and values (:func:`~echolatent.shape.criteria.criteria_matrix` then measures
    it only if it differs from that frame).
    """
    frames, values = base, base_criteria
    for t in np.flatnonzero((out != base).reshape(len(out), -1).any(axis=1)):
        row = measured.get(out[t].tobytes())
        if row is not None:
            if frames is base:
                frames, values = base.copy(), np.array(base_criteria, float, copy=True)
            frames[t], values[t] = out[t], row
    return frames, values
