"""Encoding label maps with a trained :class:`~echolatent.models.vae.MaskVAE`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["one_hot", "encode", "dice_per_class"]


def one_hot(masks: np.ndarray | torch.Tensor, n_classes: int,
            dtype: torch.dtype = torch.float32, check: bool = True) -> torch.Tensor:
    """Integer label maps (B, H, W) -> one-hot tensor (B, n_classes, H, W).

    With ``check`` (default), raises ``ValueError`` if a label is outside
    ``[0, n_classes)``.
    """
    t = torch.as_tensor(masks)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"label maps must have an integer dtype, got {t.dtype}")
    t = t.long()
    if check and t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), found "
                         f"[{int(t.min())}, {int(t.max())}]")
    return F.one_hot(t, n_classes).permute(0, 3, 1, 2).to(dtype)


@torch.no_grad()
def encode(model: torch.nn.Module, masks: np.ndarray, batch_size: int = 256,
           device: str | torch.device = "cpu", channels_last: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode label maps (N, S, S) in eval mode.

    Returns ``(mu, logvar, recon)``: float32 arrays (N, latent_dim) and the uint8 argmax of
    the decoding of mu, (N, S, S). The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    n_classes = model.config.n_classes
    was_training = model.training
    model.eval()
    mus, logvars, recons = [], [], []
    try:
        for start in range(0, len(masks), batch_size):
            x = one_hot(np.asarray(masks[start:start + batch_size]), n_classes).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            mu, logvar = model.encode(x)
            logits = model.decode(mu)
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
            recons.append(logits.argmax(1).to(torch.uint8).cpu())
    finally:
        model.train(was_training)
    if not mus:
        d = model.config.latent_dim
        s = model.config.input_size
        return (np.zeros((0, d), np.float32), np.zeros((0, d), np.float32),
                np.zeros((0, s, s), np.uint8))
    return (torch.cat(mus).numpy(), torch.cat(logvars).numpy(), torch.cat(recons).numpy())


def dice_per_class(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor,
                   n_classes: int) -> np.ndarray:
    """Hard Dice per frame and class: array (N, n_classes), float64.

    Dice = 2 |P & T| / (|P| + |T|); NaN where the class is absent from both the prediction
    and the target of that frame (average with ``np.nanmean``).
    """
    p = torch.as_tensor(np.asarray(pred)).long()
    t = torch.as_tensor(np.asarray(target)).long()
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: pred {tuple(p.shape)} vs target {tuple(t.shape)}")
    if p.ndim == 2:
        p, t = p[None], t[None]
    p, t = p.flatten(1), t.flatten(1)
    out = np.empty((p.shape[0], n_classes), dtype=np.float64)
    for c in range(n_classes):
        pc, tc = p == c, t == c
        inter = (pc & tc).sum(1).double()
        denom = (pc.sum(1) + tc.sum(1)).double()
        d = torch.where(denom > 0, 2.0 * inter / denom.clamp_min(1), torch.nan)
        out[:, c] = d.numpy()
    return out
