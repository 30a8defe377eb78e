"""Latent models of cardiac label maps: mask VAE, losses, training, checkpoints and inference.

The settings (:mod:`echolatent.models.config`) import without torch; the network code is
imported when one of its names is first used, so ``import echolatent.models.config`` (the
workflow, when it builds the DAG) does not load torch.
"""

import importlib

_NAMES = {
    "checkpoint": ("CheckpointMismatchError", "load_checkpoint", "load_model"),
    "config": ("ATTRIBUTE_NAMES", "KINDS", "VAEConfig", "LossConfig", "TrainConfig"),
    "device": ("resolve_device",),
    "inference": ("decode_masks", "encode", "encode_mu", "knows_atrium", "model_input", "one_hot"),
    "losses": ("attribute_loss", "compute_losses", "kl_divergence", "phase_loss", "reconstruction_loss",
               "soft_dice_per_class"),
    "quality": ("dice_per_class", "dice_scores"),
    "shard_encoding": ("encode_shard",),
    "training": ("TrainingInterrupted", "train_vae"),
    "vae": ("REFERENCE_VAE", "MaskVAE"),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
