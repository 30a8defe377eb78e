"""The one inference path of a trained mask VAE: label maps -> model input -> codes -> label maps.

Every stage that runs a trained network over frames goes through these functions: the
training's final encoding of its sets (latent bounds, validation Dice), the encoding of
cohort shards, the latent thresholds and the temporal correction.

:func:`model_input`
    native label maps to the model's input grid (labels the model does not know to
    background, nearest resize, through the cohort's grid as the training frames were);
:func:`encode_mu`
    posterior means (and log-variances) of model-grid label maps, in batches;
:func:`decode_masks`
    argmax label maps of latent codes, on the model grid or on a native grid;
:func:`encode`
    both at once, as the training reports them (float32 codes and the reconstruction of
    ``mu``).

The network runs in eval mode and the model's train/eval mode is restored afterwards.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from echolatent.labels import BACKGROUND, LA
from echolatent.resample import _nearest_indices, resize_masks_nearest

__all__ = [
    "one_hot",
    "knows_atrium",
    "model_input",
    "encode_mu",
    "sampled_positions",
    "decode_masks",
    "decode_masks_both",
    "encode",
]

#: Upsampling of a decoding to a native grid (``upsample`` of :func:`decode_masks`).
UPSAMPLING = ("bilinear", "nearest")


def one_hot(masks: np.ndarray | torch.Tensor, n_classes: int,
            dtype: torch.dtype = torch.float32, check: bool = True) -> torch.Tensor:
    """Integer label maps (B, H, W) -> one-hot tensor (B, n_classes, H, W).

    With ``check`` (default), raises ``ValueError`` if a label is outside
    ``[0, n_classes)``.
    """
    t = torch.as_tensor(masks)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"label maps must have an integer dtype, got {t.dtype}")
    if check and t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), found "
                         f"[{int(t.min())}, {int(t.max())}]")
    # F.one_hot's layout (classes last, then moved to dim 1), from one comparison: 3x faster
    classes = torch.arange(n_classes, dtype=t.dtype, device=t.device)
    return (t[..., None] == classes).permute(0, 3, 1, 2).to(dtype)


def knows_atrium(model) -> bool:
    """Whether the model has an LA class (4 classes) or not (BG/LV/MYO)."""
    return int(model.config.n_classes) > LA


def model_input(masks: np.ndarray, model, grid: int | None = None) -> np.ndarray:
    """Native label maps (T, H, W) -> model input (T, S, S): unknown labels to BG, nearest resize.

    With ``grid`` (the cohort's model grid, ``image_size``), the maps go through that grid
    first, exactly as the training frames did (cohort ``mask`` resized to the input size).
    """
    size = int(model.config.input_size)
    masks = np.asarray(masks)
    if not knows_atrium(model):
        masks = np.where(masks >= model.config.n_classes, BACKGROUND, masks).astype(np.uint8)
    if grid is not None and masks.shape[-2:] != (grid, grid):
        masks = resize_masks_nearest(masks, (grid, grid))
    if masks.shape[-2:] != (size, size):
        masks = resize_masks_nearest(masks, (size, size))
    return np.ascontiguousarray(masks, dtype=np.uint8)


@contextlib.contextmanager
def _evaluating(model):
    """The model in eval mode (and without gradients) for the block; its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def encode_mu(model, masks: np.ndarray, *, batch_size: int = 256, device="cpu", with_logvar: bool = False,
              channels_last: bool = False):
    """Posterior means (N, D) float64 of model-grid label maps (N, S, S) (and log-variances).

    ``channels_last`` gives the one-hot input that memory format (for a model stored so).
    """
    mus, logvars = [], []
    with _evaluating(model):
        for start in range(0, len(masks), batch_size):
            labels = torch.from_numpy(np.ascontiguousarray(masks[start:start + batch_size])).to(device)
            x = one_hot(labels, model.config.n_classes)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            mu, logvar = model.encode(x)
            mus.append(mu.double().cpu().numpy())
            logvars.append(logvar.double().cpu().numpy())
    d = int(model.config.latent_dim)
    mu = np.concatenate(mus) if mus else np.zeros((0, d))
    logvar = np.concatenate(logvars) if logvars else np.zeros((0, d))
    return (mu, logvar) if with_logvar else mu


def sampled_positions(native: int, size: int, grid: int | None = None) -> np.ndarray:
    """Native pixel index each model-grid pixel was read from (nearest, through ``grid`` if given)."""
    if grid is not None and grid != native:
        return _nearest_indices(native, grid)[_nearest_indices(grid, size)]
    return _nearest_indices(native, size)


def _linear_taps(positions: np.ndarray, n_out: int):
    """The two model pixels around each native pixel 0..n_out-1 and the weight of the second.

    Returns ``low, high`` (int64, model-grid indices) and ``frac`` (float32): native pixel ``i``
    is ``(1 - frac[i]) * model[low[i]] + frac[i] * model[high[i]]``, given the native positions
    the model pixels were sampled from (clamped to the first and last of them at the borders).
    """
    u = np.interp(np.arange(n_out), positions, np.arange(len(positions)))
    low = np.minimum(np.floor(u).astype(np.int64), len(positions) - 1)
    high = np.minimum(low + 1, len(positions) - 1)
    return low, high, (u - low).astype(np.float32)


def _linear_weights(positions: np.ndarray, n_out: int) -> torch.Tensor:
    """Linear interpolation matrix (n_out, S) from the model grid to native pixels 0..n_out-1
    (the taps of :func:`_linear_taps` as a matrix: resizing is two matrix products)."""
    low, high, frac = _linear_taps(positions, n_out)
    weights = np.zeros((n_out, len(positions)), np.float32)
    np.add.at(weights, (np.arange(n_out), low), 1 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return torch.from_numpy(weights)


def _argmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(1)`` as uint8 (first maximum wins, as argmax): a running comparison over
    the few classes, much faster on CPU than ``argmax`` over the strided class axis."""
    best = logits[:, 0]
    index = torch.zeros(logits.shape[:1] + logits.shape[2:], dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[1]):
        better = logits[:, c] > best
        best = torch.maximum(best, logits[:, c])  # (ties keep the earlier class: `better` is strict)
        index = torch.where(better, torch.tensor(c, dtype=torch.uint8, device=logits.device), index)
    return index


#: Relative margin (of the largest logit magnitude in a batch) by which a class must lead at
#: every model pixel around a native pixel for that pixel to be labelled without interpolating.
#: Float32 interpolation (two products and a sum per axis) errs by at most ~14 units of
#: roundoff (2**-24) of that magnitude on a difference of two classes, 8.3e-7: the margin
#: is 12 times that.
_SAFE_MARGIN = 1e-5


def _spread(blocks: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``blocks[:, rows][:, :, cols]``: each native pixel takes the value of its model block."""
    if blocks.device.type == "cpu":  # numpy's take is ~5x faster than index_select on CPU
        return torch.from_numpy(blocks.numpy().take(rows.numpy(), axis=1).take(cols.numpy(), axis=2))
    return blocks.index_select(1, rows).index_select(2, cols)


def _band_pixels(unsure: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """Indices (b, y, x) of the native pixels whose model block is ``unsure`` (B, S, S), without
    scanning the native grid: the native rows of block row i are a run (``rows`` is
    non-decreasing), and likewise the columns."""
    bb, ii, jj = unsure.nonzero(as_tuple=True)
    if not len(bb):
        empty = torch.zeros(0, dtype=torch.int64, device=unsure.device)
        return empty, empty, empty
    n = unsure.shape[1]
    first_row = torch.searchsorted(rows, torch.arange(n, device=rows.device))
    n_rows = torch.searchsorted(rows, torch.arange(n, device=rows.device), right=True) - first_row
    first_col = torch.searchsorted(cols, torch.arange(unsure.shape[2], device=cols.device))
    n_cols = torch.searchsorted(cols, torch.arange(unsure.shape[2], device=cols.device), right=True) - first_col
    # one entry per (block, native row of the block): then each spans the block's columns
    per_block = n_rows[ii]
    block = torch.repeat_interleave(torch.arange(len(bb), device=bb.device), per_block)
    start = torch.cumsum(per_block, 0) - per_block
    y = first_row[ii][block] + torch.arange(len(block), device=bb.device) - start[block]
    width = n_cols[jj][block]
    line = torch.repeat_interleave(torch.arange(len(block), device=bb.device), width)
    start = torch.cumsum(width, 0) - width
    x = first_col[jj][block][line] + torch.arange(len(line), device=bb.device) - start[line]
    return bb[block][line], y[line], x


def _upsampled_argmax(logits: torch.Tensor, top: torch.Tensor, rows, cols) -> torch.Tensor:
    """Argmax (B, H, W) uint8 of the bilinear upsampling of ``logits`` (B, C, S, S), computed
    only where it can differ from the model pixels' own argmax ``top`` (B, S, S).

    Bilinear weights are non-negative and sum to one, so where the same class leads the others
    at all four model pixels around a native pixel, it leads them in any weighted mean of
    those pixels: that native pixel takes the class without interpolating. The lead must
    exceed :data:`_SAFE_MARGIN` of the batch's largest logit, more than float32 rounding of
    the interpolation can take away, so the result is the argmax of the upsampled logits
    everywhere. Only the remaining band along the boundaries is interpolated (rows first,
    then columns, in float32, as the matrix products of :func:`_linear_weights`).
    ``rows`` and ``cols`` are the taps of :func:`_linear_taps` on the native rows and columns.
    """
    n_classes = logits.shape[1]
    device = logits.device
    (r0, r1, fr), (c0, c1, fc) = [tuple(torch.as_tensor(a, device=device) for a in taps) for taps in (rows, cols)]
    best = logits.amax(1)
    runner_up = logits.masked_fill(F.one_hot(top.long(), n_classes).permute(0, 3, 1, 2).bool(),
                                   -torch.inf).amax(1)
    unsure = torch.tensor(255, dtype=torch.uint8, device=device)  # no class has index 255
    bound = _SAFE_MARGIN * float(logits.abs().amax()) if logits.numel() else 0.0
    label = torch.where(best - runner_up > bound, top, unsure)
    # On the model grid: the class of each 2 x 2 block of pixels (i, j)..(i + 1, j + 1) if all
    # four are sure of it (the last row and column pair with themselves), else unsure.
    # Native pixel (y, x) lies in block (r0[y], c0[x]), since r1 = r0 + 1 but at the last pixel.
    down = torch.cat([label[:, 1:], label[:, -1:]], 1)
    label = torch.where(label == down, label, unsure)
    right = torch.cat([label[:, :, 1:], label[:, :, -1:]], 2)
    label = torch.where(label == right, label, unsure)
    out = _spread(label, r0, c0)
    b, y, x = _band_pixels(label == unsure, r0, c0)
    if len(b):
        wy, wx = fr[y][:, None], fc[x][:, None]
        height, width = logits.shape[-2:]
        pixels = logits.permute(0, 2, 3, 1).reshape(-1, n_classes)  # (B * S * S, C)
        at = lambda i, j: pixels.index_select(0, (b * height + i) * width + j)  # (n, C) at each corner
        first = at(r0[y], c0[x]) * (1 - wy) + at(r1[y], c0[x]) * wy
        second = at(r0[y], c1[x]) * (1 - wy) + at(r1[y], c1[x]) * wy
        values = first * (1 - wx) + second * wx
        out[b, y, x] = _argmax_channels(values[:, :, None, None])[:, 0, 0]
    return out


def decode_masks(model, z: np.ndarray, *, batch_size: int = 256, device="cpu", size=None,
                 grid: int | None = None, upsample: str = "bilinear") -> np.ndarray:
    """Argmax decoding (N, S, S) uint8 of latent codes (N, D), or (N, H, W) on a native grid.

    With ``size = (H, W)`` and ``upsample="bilinear"`` the logits are interpolated linearly
    to that (native) grid and the argmax is taken there: boundaries then fall between the
    model-grid pixels instead of following their staircase, as a nearest resize of the
    argmax (``upsample="nearest"``, the TMI 2022 reference) would. Model pixel ``i`` is
    placed at the native pixel its input was read from (:func:`sampled_positions`, through
    the cohort ``grid`` as the training frames were), so the output is not shifted.
    """
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {UPSAMPLING}, got {upsample!r}")
    if size is not None and upsample == "nearest":
        return resize_masks_nearest(decode_masks(model, z, batch_size=batch_size, device=device), size)
    if size is None:
        return _decode(model, z, batch_size=batch_size, device=device, size=None, grid=grid)[0]
    return _decode(model, z, batch_size=batch_size, device=device, size=size, grid=grid, model_grid=False)[1]


def decode_masks_both(model, z: np.ndarray, *, size, batch_size: int = 256, device="cpu",
                      grid: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both argmax decodings of latent codes from one decoder pass: on the model grid (N, S, S)
    and on the native grid ``size`` (N, H, W), the latter as :func:`decode_masks` with ``size``."""
    return _decode(model, z, batch_size=batch_size, device=device, size=size, grid=grid)


def _decode(model, z, *, batch_size, device, size, grid, model_grid: bool = True):
    """Argmax decodings on the model grid (if ``model_grid``) and on ``size`` (if given), one pass."""
    s = int(model.config.input_size)
    small, large = [], []
    if size is not None:
        size = (int(size[0]), int(size[1]))
        rows = _linear_taps(sampled_positions(size[0], s, grid), size[0])
        cols = _linear_taps(sampled_positions(size[1], s, grid), size[1])
        # keep the upsampled logits of a batch to about 64 MB
        batch_size = max(1, min(batch_size, (1 << 24) // (int(model.config.n_classes) * size[0] * size[1])))
    with _evaluating(model):
        for start in range(0, len(z), batch_size):
            codes = torch.as_tensor(np.asarray(z[start:start + batch_size]), dtype=torch.float32, device=device)
            logits = model.decode(codes).float()
            top = _argmax_channels(logits)
            if model_grid:
                small.append(top.cpu().numpy())
            if size is not None:
                large.append(_upsampled_argmax(logits, top, rows, cols).cpu().numpy())
    small = np.concatenate(small) if small else np.zeros((0, s, s), np.uint8) if model_grid else None
    if size is not None:
        large = np.concatenate(large) if large else np.zeros((0, *size), np.uint8)
    return small, large if size is not None else None


def encode(model, masks: np.ndarray, batch_size: int = 256, device: str | torch.device = "cpu",
           channels_last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode model-grid label maps (N, S, S) and decode their means.

    Returns
    -------
    mu, logvar : ndarray (N, latent_dim) float32
    recon : ndarray (N, S, S) uint8
        The argmax decoding of ``mu``.
    """
    mu, logvar = encode_mu(model, masks, batch_size=batch_size, device=device, with_logvar=True,
                           channels_last=channels_last)
    recon = decode_masks(model, mu, batch_size=batch_size, device=device)
    return mu.astype(np.float32), logvar.astype(np.float32), recon
