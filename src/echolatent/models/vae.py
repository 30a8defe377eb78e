"""Convolutional VAE for one-hot cardiac label maps.

The layout follows the mask VAE of the TMI 2022 setting (see the reference note
``latent_models.md`` §1), re-implemented from its description and made configurable:

* encoder: ``blocks`` x [3x3 stride-2 conv + 3x3 conv], channels
  ``init_channels * 2**b``; every conv is followed by ELU then BatchNorm;
* bottleneck: 3x3 stride-2 conv to ``bottleneck_channels`` (ELU, BatchNorm), flattened
  and fed to two linear heads giving mu and log sigma^2;
* decoder (mirror): linear + ELU, reshape, ``blocks`` x [2x2 stride-2 transposed conv +
  3x3 conv] with the encoder channels in reverse order, one more 2x2 stride-2
  transposed conv, and a final 3x3 conv to ``n_classes`` logits;
* optional phase head: one ``nn.Linear(latent_dim, 1)`` without activation, applied to mu
  (phase-constrained "cVAE" of TMI 2020).

The spatial size at the bottleneck is ``input_size / 2**(blocks + 1)``, so ``input_size``
must be divisible by ``2**(blocks + 1)``. The reference configuration is
``VAEConfig(n_classes=3, input_size=256, blocks=4, init_channels=48, latent_dim=16,
bottleneck_channels=48)`` (8 x 8 x 48 = 3072 features at the bottleneck).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .config import VAEConfig

__all__ = ["VAEConfig", "MaskVAE", "REFERENCE_VAE", "reparameterize"]


REFERENCE_VAE = dict(n_classes=3, input_size=256, blocks=4, init_channels=48, latent_dim=16,
                     bottleneck_channels=48)


def _conv_unit(conv: nn.Module, channels: int) -> list[nn.Module]:
    """conv -> ELU -> BatchNorm (the order of the reference)."""
    return [conv, nn.ELU(inplace=True), nn.BatchNorm2d(channels)]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps with eps ~ N(0, I) drawn from ``generator``."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


class MaskVAE(nn.Module):
    """VAE on one-hot label maps of shape (B, n_classes, S, S); outputs logits."""

    def __init__(self, config: VAEConfig | Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__()
        if config is None:
            config = VAEConfig(**kwargs)
        elif isinstance(config, Mapping):
            config = VAEConfig.from_dict({**config, **kwargs})
        elif kwargs:
            raise TypeError("pass either a VAEConfig or keyword arguments, not both")
        self.config = config
        c = config
        chans = c.channels

        enc: list[nn.Module] = []
        in_ch = c.n_classes
        for ch in chans:
            enc += _conv_unit(nn.Conv2d(in_ch, ch, 3, stride=2, padding=1), ch)
            enc += _conv_unit(nn.Conv2d(ch, ch, 3, padding=1), ch)
            in_ch = ch
        enc += _conv_unit(nn.Conv2d(in_ch, c.bottleneck_channels, 3, stride=2, padding=1),
                          c.bottleneck_channels)
        self.encoder = nn.Sequential(*enc)

        n_flat = c.bottleneck_channels * c.bottleneck_size**2
        self.fc_mu = nn.Linear(n_flat, c.latent_dim)
        self.fc_logvar = nn.Linear(n_flat, c.latent_dim)

        self.fc_dec = nn.Sequential(nn.Linear(c.latent_dim, n_flat), nn.ELU(inplace=True))
        dec: list[nn.Module] = []
        in_ch = c.bottleneck_channels
        for ch in reversed(chans):
            dec += _conv_unit(nn.ConvTranspose2d(in_ch, ch, 2, stride=2), ch)
            dec += _conv_unit(nn.Conv2d(ch, ch, 3, padding=1), ch)
            in_ch = ch
        dec += _conv_unit(nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2), in_ch)
        dec.append(nn.Conv2d(in_ch, c.n_classes, 3, padding=1))
        self.decoder = nn.Sequential(*dec)

        self.phase_head = nn.Linear(c.latent_dim, 1) if c.phase_head else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot maps (B, C, S, S) -> (mu, logvar), each (B, latent_dim)."""
        h = torch.flatten(self.encoder(x), 1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes (B, latent_dim) -> logits (B, n_classes, S, S)."""
        c = self.config
        h = self.fc_dec(z).view(-1, c.bottleneck_channels, c.bottleneck_size, c.bottleneck_size)
        return self.decoder(h)

    def phase(self, mu: torch.Tensor) -> torch.Tensor:
        """Phase prediction (B,) from mu; raises if the model has no phase head."""
        if self.phase_head is None:
            raise RuntimeError("this model was built without a phase head (phase_head=False)")
        return self.phase_head(mu).squeeze(-1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode, sample z (or take z = mu when ``sample`` is False) and decode.

        Returns a dict with ``logits``, ``mu``, ``logvar``, ``z`` and, with a phase head,
        ``phase`` (computed on mu).
        """
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator) if sample else mu
        out = {"logits": self.decode(z), "mu": mu, "logvar": logvar, "z": z}
        if self.phase_head is not None:
            out["phase"] = self.phase(mu)
        return out
