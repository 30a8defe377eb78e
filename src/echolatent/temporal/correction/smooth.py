"""The smoothing correction (``method="smooth"``): the TMI 2022 pipeline, with optional extensions.

1. pre-clean the native masks (:func:`echolatent.temporal.preclean.preclean`);
2. resize to the model input (nearest, through the cohort's grid as the training frames
   were) and encode ``mu``;
3. smooth the latent trajectories (:func:`~echolatent.temporal.smoothing.smooth_trajectories`):
   all dimensions with the snake weight, the attribute dimensions with the smallest weight
   that leaves no frame above its latent threshold;
4. decode and go back to the native grid: by default the logits are interpolated linearly
   to the native grid, each model pixel placed where its input was read from, and the
   argmax is taken there (``upsample="bilinear"``); the reference takes the argmax on the
   model grid and resizes it (``upsample="nearest"``), whose staircase makes the attribute
   curves of a 64 px model inconsistent (:func:`~echolatent.models.inference.decode_masks`);
5. **labels the model does not know.** With a 3-class model (BG/LV/MYO, as in the
   reference) the LA is not corrected. ``atrium="keep"`` (default) puts the pre-cleaned
   input LA back on the pixels the corrected LV/MYO leave as background, so the output
   keeps the 4-label convention of the cohort and the anatomical criteria that involve the
   LA stay measurable; ``atrium="drop"`` leaves the LA out, as the reference does. A 4-class
   model corrects the LA like the other structures.

Beyond the reference (all optional; the image-space thresholds are then needed):

``scope="inconsistent"``
    only the sequences the image-space metric flags are corrected; the others are written
    unchanged.
``scope="frames"``
    every sequence is pre-cleaned; only its frames that are inconsistent (image space) or
    anatomically invalid after pre-cleaning take the decoded smoothed masks, the others
    keep the pre-cleaned input. This keeps the input wherever nothing is wrong with it
    (smoothing every frame flattens the true motion too), but decoded and input frames may
    not join consistently.
``output="displacement"``
    instead of the decoded masks, a corrected frame is the pre-cleaned input whose
    boundaries move by the displacement between the decoding of its encoded and of its
    smoothed latent code (:func:`~echolatent.temporal.correction.displacement.transfer_displacement`).
``max_rounds > 1``
    the output is checked in image space after each round; a sequence still inconsistent
    has its offending frames corrected too (``frames``) or, when they all are already, is
    re-smoothed with latent thresholds scaled by ``tighten`` and the weight of the free
    dimensions divided by it (up to ``max_weight``). With a small first ``weight`` this
    searches the least smoothing that makes each sequence consistent in image space:
    smoothing flattens the cardiac motion, so the least is the most faithful.
"""

from __future__ import annotations

import numpy as np

from echolatent.labels import BACKGROUND as BG
from echolatent.labels import LA
from echolatent.models.inference import decode_masks, encode_mu, knows_atrium, model_input
from echolatent.temporal.config import CorrectionConfig
from echolatent.temporal.correction.consistency import LatentConstraint, image_check, image_spec
from echolatent.temporal.correction.displacement import transfer_displacement
from echolatent.temporal.correction.result import CorrectedSequence
from echolatent.temporal.preclean import preclean
from echolatent.temporal.smoothing import smooth_trajectories

__all__ = ["smooth_sequences"]


def smooth_sequences(model, masks_native: list[np.ndarray], *, constraint: LatentConstraint | None,
                     config: CorrectionConfig, spacings=None, image=None, grid: int | None = None, device="cpu",
                     cycle=None) -> list[CorrectedSequence]:
    """Correct label-map sequences by smoothing their latent trajectories (module docstring).

    The parameters are those of :func:`~echolatent.temporal.correction.sequences.correct_sequences`;
    ``config.method`` is not read (the repair's fallback calls this directly). ``image`` is
    needed for ``scope`` other than ``"all"`` and for ``max_rounds > 1``.
    """
    keep_la = knows_atrium(model)
    drop_la = not keep_la and config.atrium == "drop"
    n = len(masks_native)
    if (config.scope != "all" or config.max_rounds > 1) and image is None:
        raise ValueError(f"scope={config.scope!r} and max_rounds > 1 need the image-space thresholds")
    thresholds = image_spec(image, config.margin, config.detector, cycle)    # the image-space check
    if thresholds is not None and spacings is None:
        raise ValueError("the image-space check needs the spacing of each sequence")
    results = []
    for masks in masks_native:
        x = np.asarray(masks, dtype=np.uint8)
        results.append(CorrectedSequence(input=x, cleaned=preclean(x, keep_atrium=True), masks=x,
                                         replaced=np.zeros(len(x), bool)))
    # what a frame that is not replaced keeps: the pre-cleaned input (without the LA if dropped)
    base = [np.where(r.cleaned == LA, BG, r.cleaned).astype(np.uint8) if drop_la else r.cleaned for r in results]
    if thresholds is not None:
        curves, checks = image_check([r.input for r in results], spacings, thresholds, cycle)
        for r, curve, check in zip(results, curves, checks):
            r.curves_before = r.curves_after = curve
            r.check_before = r.check_after = check
    # Which sequences, and which of their frames (`replace`), take the decoded smoothed masks.
    replace = {}
    if config.scope == "all":
        todo = list(range(n))
    elif config.scope == "inconsistent":
        todo = [i for i in range(n) if results[i].check_before["sequence_inconsistent"]]
    else:  # frames: inconsistent or anatomically invalid frames of the pre-cleaned input
        from echolatent.shape.criteria import anatomical_metrics

        labels = (1, 2) if drop_la else (1, 2, 3)
        base_curves, checks = image_check(base, spacings, thresholds, cycle)
        todo = []
        for i, (r, curve, check) in enumerate(zip(results, base_curves, checks)):
            invalid = anatomical_metrics(base[i], spacings[i], labels=labels)["anatomical_errors"].to_numpy()
            r.masks, replace[i] = base[i], check["frame_inconsistent"] | invalid
            r.curves_after, r.check_after = curve, check
            if replace[i].any():
                todo.append(i)
    for i in todo:
        replace.setdefault(i, np.ones(len(results[i].input), bool))
    # Encode the pre-cleaned sequences to correct (one network call for all their frames).
    if todo:
        inputs = [model_input(preclean(results[i].input, keep_atrium=keep_la), model, grid) for i in todo]
        mu = encode_mu(model, np.concatenate(inputs), batch_size=config.batch_size, device=device)
        offsets = np.cumsum([0] + [len(x) for x in inputs])
        for j, i in enumerate(todo):
            results[i].mu = mu[offsets[j]:offsets[j + 1]]

    def decode_native(i, z):
        return decode_masks(model, z, batch_size=config.batch_size, device=device, size=results[i].input.shape[-2:],
                            grid=grid, upsample=config.upsample)

    scale = np.ones(n)
    decoded, decoded_mu = {}, {}
    stale = list(todo)  # sequences whose smoothed trajectory must be (re)computed and decoded
    for round_ in range(config.max_rounds):
        if not todo:
            break
        if stale:
            smoothed, weights = _smooth_groups([results[i].mu for i in stale], constraint, config, scale[stale],
                                               cycle)
            for j, i in enumerate(stale):
                r = results[i]
                if config.output == "displacement":
                    if i not in decoded_mu:
                        decoded_mu[i] = decode_native(i, r.mu)
                    out = transfer_displacement(base[i], decoded_mu[i], decode_native(i, smoothed[j]))
                else:
                    out = decode_native(i, smoothed[j])
                    if not keep_la and config.atrium == "keep":
                        out[(out == BG) & (r.cleaned == LA)] = LA
                decoded[i] = np.ascontiguousarray(out, dtype=np.uint8)
                r.z, r.weights = smoothed[j], weights[j]
        for i in todo:
            r = results[i]
            r.masks = decoded[i] if replace[i].all() else np.where(replace[i][:, None, None], decoded[i], base[i])
            r.corrected, r.rounds, r.replaced = True, round_ + 1, replace[i].copy()
        if thresholds is None:
            break
        curves, checks = image_check([results[i].masks for i in todo], [spacings[i] for i in todo], thresholds,
                                     cycle)
        still, stale = [], []
        for j, i in enumerate(todo):
            r = results[i]
            r.curves_after, r.check_after = curves[j], checks[j]
            if not checks[j]["sequence_inconsistent"]:
                continue
            still.append(i)
            grow = checks[j]["frame_inconsistent"] & ~replace[i]
            if grow.any():
                replace[i] |= grow  # frames scope: correct the offending frames too
            else:
                scale[i] *= config.tighten  # smooth more
                stale.append(i)
        todo = still
    for r in results:
        r.method = "smooth" if r.corrected else "none"
    return results


def _smooth_groups(mus: list[np.ndarray], constraint: LatentConstraint | None, config: CorrectionConfig,
                   scale, cycle=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Smooth each (T_i, D) trajectory, batching the sequences of equal length; ``scale`` (N,) scales τ."""
    smoothed, weights = [None] * len(mus), [None] * len(mus)
    lengths = np.array([len(m) for m in mus])
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        for factor in np.unique(np.asarray(scale)[members]):
            chosen = members[np.asarray(scale)[members] == factor]
            z = np.stack([mus[i] for i in chosen])
            kwargs = {}
            if constraint is not None and len(constraint.dims):
                kwargs = dict(constrained_dims=constraint.dims, thresholds=constraint.tau * factor,
                              lo=constraint.lo, hi=constraint.hi,
                              end_thresholds=None if constraint.tau_end is None else constraint.tau_end * factor)
            free_weight = min(config.weight / factor, max(config.max_weight, config.weight))
            out, w = smooth_trajectories(z, weight=free_weight, max_weight=config.max_weight,
                                         n_bisections=config.n_bisections, n_neighbours=config.n_neighbours,
                                         margin=config.margin, return_weights=True, cycle=cycle, **kwargs)
            for j, i in enumerate(chosen):
                smoothed[i], weights[i] = out[j], w[j]
    return smoothed, weights
