"""Latent models of cardiac label maps: mask VAE, losses, training and encoding.

The settings (:mod:`echolatent.models.config`) import without torch; the network code is
imported when one of its names is first used, so ``import echolatent.models.config`` (the
workflow, when it builds the DAG) does not load torch.
"""

import importlib

_NAMES = {
    "config": ("ATTRIBUTE_NAMES", "KINDS", "VAEConfig", "LossConfig", "TrainConfig"),
    # the function encode is echolatent.models.encode.encode: the submodule's name shadows it here
    "encode": ("one_hot", "dice_per_class"),
    "losses": ("attribute_loss", "compute_losses", "kl_divergence", "phase_loss", "reconstruction_loss",
               "soft_dice_per_class"),
    "training": ("CheckpointMismatchError", "TrainingInterrupted", "load_checkpoint", "load_model", "resolve_device",
                 "train_vae"),
    "vae": ("REFERENCE_VAE", "MaskVAE"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
