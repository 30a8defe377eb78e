"""Correction of implausible segmentations by the nearest valid shape (TMI 2020).

For every frame that fails an anatomical criterion, :func:`correct_frames`

1. takes its latent code ``z0`` (given, or the posterior mean of its label map);
2. finds the nearest valid code ``z1`` among those a densification kept
   (:func:`~echolatent.guarantees.nearest.nearest_codes`);
3. checks that ``z1`` decodes to a valid shape *on this frame's grid and spacing* (the valid
   codes were screened on the model grid; the decoding resampled to the native grid is
   measured again); if not, the next nearest code is tried, up to ``max_candidates``. A frame
   none of them fits is ``uncorrectable``: its mask is left as it was and it is reported,
   never counted as corrected;
4. bisects the segment ``z(t) = (1 - t) z0 + t z1`` for the smallest ``t`` whose decoding is
   valid: ``t = 0`` (the reconstruction of the frame) is tried first, then
   ``n_bisections`` halvings of ``[lo, hi]`` with ``hi`` always a point *tested* valid
   (validity need not be monotone along the segment, so the answer is a valid decoding with
   an invalid one ``2 ** -n_bisections`` before it, not a global minimum);
5. returns the decoding at ``hi``;
6. with ``refine="image"``, walks back from that valid decoding towards the original frame
   along the signed-distance interpolation of the two label maps and keeps the last valid
   map (:mod:`echolatent.guarantees.refine`): the decoding carries the VAE's reconstruction
   error over the whole frame, the refinement keeps the original wherever validity allows.

Valid frames are returned untouched (the same bytes). All frames being corrected are
decoded and checked together at each bisection step (one batch per step).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from echolatent.guarantees.densify import model_labels, valid_maps
from echolatent.guarantees.nearest import nearest_codes
from echolatent.models.inference import decode_masks, encode_mu, model_input

__all__ = ["STATUSES", "REFINEMENTS", "Correction", "correct_frames"]

#: Status of a frame after :func:`correct_frames`.
STATUSES = ("valid", "corrected", "uncorrectable")

#: What :func:`correct_frames` does after the latent bisection.
REFINEMENTS = ("none", "image", "components")


@dataclasses.dataclass(frozen=True)
class Correction:
    """Result of :func:`correct_frames`, one entry per frame.

    masks : ndarray (N, H, W) uint8
        Valid and uncorrectable frames as given; corrected ones decoded at ``t``.
    status : ndarray (N,) of str
        ``"valid"`` (untouched), ``"corrected"`` or ``"uncorrectable"``.
    t : ndarray (N,) float
        Position on the segment from the frame's code to its nearest valid code (NaN unless corrected).
    distance : ndarray (N,) float
        Latent distance moved, ``t * ||z1 - z0||`` (0 for valid frames, NaN for uncorrectable ones).
    nearest_distance : ndarray (N,) float
        ``||z1 - z0||`` to the nearest valid code (NaN for valid frames).
    nearest_index : ndarray (N,) int64
        Row of that code in ``valid_codes`` (-1 for valid frames).
    lam : ndarray (N,) float
        How much of the latent correction the refinement kept: the position on the image-space
        path (``image``), the share of the changed pixels still changed (``components``); 1
        without refinement, NaN unless corrected.
    """

    masks: np.ndarray
    status: np.ndarray
    t: np.ndarray
    distance: np.ndarray
    nearest_distance: np.ndarray
    nearest_index: np.ndarray
    lam: np.ndarray


def correct_frames(model, masks: np.ndarray, spacing, valid_codes: np.ndarray, *, codes: np.ndarray | None = None,
                   grid="auto", cohort_grid: int | None = None, labels: Sequence[int] | None = None,
                   thresholds: Mapping[str, tuple[float, float]] | None = None, n_bisections: int = 10,
                   max_distance: float | None = None, upsample: str = "bilinear", batch_size: int = 256,
                   device="cpu", search_device=None, block_size: int = 65536, max_candidates: int = 16,
                   refine: str = "none",
                   refine_bisections: int = 8) -> Correction:
    """Replace each anatomically invalid frame by the valid decoding closest to it in latent space.

    Parameters
    ----------
    model : torch.nn.Module
        A mask VAE (``encode``/``decode``, ``config.n_classes``/``input_size``/``latent_dim``).
    masks : ndarray (N, H, W) int
        The frames on their native grid (one sequence, or several of the same size).
    spacing : (h, w) or ndarray (N, 2)
        Their pixel size in mm, for the criteria.
    valid_codes : ndarray (M, D)
        Codes whose decodings are valid (:func:`~echolatent.guarantees.densify.densify`).
    codes : ndarray (N, D), optional
        The frames' latent codes; default: posterior means of
        ``model_input(masks, model, grid=cohort_grid)``. Only the invalid frames' rows are used.
    grid, labels, thresholds
        How validity is measured (:func:`~echolatent.guarantees.densify.valid_maps`);
        ``labels`` defaults to the model's label set.
    cohort_grid : int, optional
        The cohort's model grid (``image_size``), through which frames reach the model
        (:func:`~echolatent.models.inference.model_input`, ``decode_masks(grid=...)``).
    n_bisections : int
        Halvings of the segment; ``t`` is within ``2 ** -n_bisections`` of an invalid point.
    max_distance : float, optional
        A frame whose nearest valid code is farther is ``uncorrectable`` (no valid code within reach).
    upsample : str
        Decoding to the native grid (:func:`~echolatent.models.inference.decode_masks`).
    batch_size, device
        Network batches and device; ``search_device`` / ``block_size`` for the nearest search.
    max_candidates : int
        Valid codes tried per frame, nearest first, until one decodes valid on the frame's grid
        (a frame none of them fits is ``uncorrectable``).
    refine : {"none", "image", "components"}
        Refine each corrected frame in image space towards the original: along the shape
        path (``image``, :func:`~echolatent.guarantees.refine.refine_toward`,
        ``refine_bisections`` halvings) or by giving back every connected change validity does
        not need (``components``, :func:`~echolatent.guarantees.refine.revert_components`).

    Returns
    -------
    Correction
    """
    masks = np.asarray(masks)
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {REFINEMENTS}, got {refine!r}")
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if not isinstance(n_bisections, (int, np.integer)) or n_bisections < 0:
        raise ValueError(f"n_bisections must be a non-negative integer, got {n_bisections!r}")
    labels = model_labels(model) if labels is None else tuple(labels)
    n, size = len(masks), masks.shape[1:]
    sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (n, 2))
    out = masks.copy()
    status = np.full(n, "valid", dtype=object)
    t = np.full(n, np.nan)
    moved = np.zeros(n)
    reach = np.full(n, np.nan)
    nearest = np.full(n, -1, np.int64)
    lam = np.full(n, np.nan)

    def check(maps, rows):
        return valid_maps(maps, sp[rows], grid=grid, labels=labels, thresholds=thresholds)

    def decode(z):
        return decode_masks(model, z, batch_size=batch_size, device=device, size=size, grid=cohort_grid,
                            upsample=upsample)

    bad = np.flatnonzero(~check(masks, np.arange(n)))
    if len(bad) == 0:
        return Correction(out, status.astype(str), t, moved, reach, nearest, lam)
    if codes is None:
        z0 = encode_mu(model, model_input(masks[bad], model, grid=cohort_grid), batch_size=batch_size, device=device)
    else:
        z0 = np.asarray(codes, dtype=np.float64)[bad]
    valid_codes = np.asarray(valid_codes, dtype=np.float64)
    # The end of the segment must itself decode valid on this frame's grid (the codes were screened on
    # the model grid), or there is nothing to bisect towards. A code that fails there is set aside and
    # the next nearest tried, up to max_candidates codes per frame; set aside for all frames of this
    # call (they share the native grid), so a frame may get a farther code, but always a tested one.
    index = np.full(len(bad), -1, np.int64)
    dist = np.full(len(bad), np.nan)
    end_maps = np.zeros((len(bad),) + tuple(size), np.uint8)
    ok = np.zeros(len(bad), bool)
    usable = np.ones(len(valid_codes), bool)
    pending = np.arange(len(bad))
    for _ in range(int(max_candidates)):
        if not len(pending) or not usable.any():
            break
        pool = np.flatnonzero(usable)
        found, d = nearest_codes(z0[pending], valid_codes[pool], block_size=block_size, device=search_device)
        found = pool[found]
        index[pending], dist[pending] = found, d
        if max_distance is not None:
            pending, found = pending[d <= max_distance], found[d <= max_distance]  # out of reach: done
        if not len(pending):
            break
        maps = decode(valid_codes[found])
        good = check(maps, bad[pending])
        ok[pending[good]], end_maps[pending[good]] = True, maps[good]
        usable[found[~good]] = False
        pending = pending[~good]
    z1 = valid_codes[np.maximum(index, 0)]
    nearest[bad], reach[bad] = index, dist
    moved[bad] = np.nan
    status[bad[~ok]] = "uncorrectable"
    keep = np.flatnonzero(ok)
    bad, z0, z1, hi_maps = bad[keep], z0[keep], z1[keep], end_maps[keep]
    if len(bad) == 0:
        return Correction(out, status.astype(str), t, moved, reach, nearest, lam)

    lo, hi = np.zeros(len(bad)), np.ones(len(bad))
    # t = 0, the reconstruction of the frame itself, may already be valid: then nothing need move
    start_maps = decode(z0)
    at_zero = check(start_maps, bad)
    hi[at_zero], hi_maps[at_zero] = 0.0, start_maps[at_zero]
    active = ~at_zero
    for _ in range(int(n_bisections)):
        rows = np.flatnonzero(active)
        if len(rows) == 0:
            break
        mid = 0.5 * (lo[rows] + hi[rows])
        z = (1.0 - mid)[:, None] * z0[rows] + mid[:, None] * z1[rows]
        maps = decode(z)
        valid = check(maps, bad[rows])
        hi[rows[valid]], hi_maps[rows[valid]] = mid[valid], maps[valid]  # hi: always a decoding tested valid
        lo[rows[~valid]] = mid[~valid]
    lam[bad] = 1.0
    if refine == "image":
        from echolatent.guarantees.refine import refine_toward

        hi_maps, lam[bad] = refine_toward(masks[bad], hi_maps, sp[bad], lambda maps, rows: check(maps, bad[rows]),
                                          labels=labels, n_bisections=refine_bisections)
    elif refine == "components":
        from echolatent.guarantees.refine import revert_components

        hi_maps, lam[bad] = revert_components(masks[bad], hi_maps, lambda maps, rows: check(maps, bad[rows]))
    out[bad] = hi_maps
    status[bad] = "corrected"
    t[bad] = hi
    moved[bad] = hi * np.linalg.norm(z1 - z0, axis=1)
    return Correction(out, status.astype(str), t, moved, reach, nearest, lam)
