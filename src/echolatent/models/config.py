"""Settings of the latent models: architecture, loss and training, without torch.

:class:`VAEConfig`, :class:`LossConfig` and :class:`TrainConfig` are plain dataclasses, so the
workflow can check a model's settings when it builds the DAG without importing torch (the
network code imports them from here). Their field defaults are the defaults of a model entry
of the workflow's configuration (``models:`` in ``config/config.yaml``); the schema states
only what the workflow adds (``kind``, ``attributes``, ``runtime_minutes``),
and the model grid is the cohort's ``image_size`` (:func:`train_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from echolatent.labels import LABELS
from echolatent.settings import defaults
from echolatent.shape.attributes import TEMPORAL_ATTRIBUTES

__all__ = ["KINDS", "ATTRIBUTE_NAMES", "CLASS_NAMES", "VAEConfig", "LossConfig", "TrainConfig", "check_keys",
           "as_float", "study_models"]

#: The model grid: the cohort's ``image_size`` (one fact, stated in the schema).
IMAGE_SIZE = defaults("cohort")["image_size"]

#: AR-VAE attribute order (``shape_attributes.md``): attribute l is tied to latent dim l.
ATTRIBUTE_NAMES = list(TEMPORAL_ATTRIBUTES)
#: Class name of each label value (index = label, :data:`echolatent.labels.LABELS`).
CLASS_NAMES = list(LABELS)

def check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming every key of ``data`` that ``cls`` does not define."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)}"
        )


def as_float(where: str, value: Any, minimum: float = 0.0) -> float:
    """A number >= ``minimum``; numeric strings such as "5e-4" (which YAML 1.1 reads as
    strings) are accepted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"{where} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


@dataclass
class VAEConfig:
    """Architecture of :class:`MaskVAE`. Defaults are the CPU default of the workflow."""

    n_classes: int = 4
    input_size: int = IMAGE_SIZE
    blocks: int = 3
    init_channels: int = 16
    latent_dim: int = 16
    bottleneck_channels: int = 16
    phase_head: bool = False

    def __post_init__(self) -> None:
        for name in ("n_classes", "input_size", "blocks", "init_channels", "latent_dim",
                     "bottleneck_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VAEConfig.{name} must be a positive integer, got {value!r}")
        if self.n_classes < 2:
            raise ValueError("VAEConfig.n_classes must be >= 2 (background + 1 structure)")
        factor = 2 ** (self.blocks + 1)
        if self.input_size % factor:
            raise ValueError(
                f"VAEConfig.input_size={self.input_size} must be divisible by "
                f"2**(blocks+1) = {factor} (blocks={self.blocks})"
            )
        if not isinstance(self.phase_head, bool):
            raise ValueError("VAEConfig.phase_head must be a bool")

    @property
    def bottleneck_size(self) -> int:
        """Side of the feature map at the bottleneck."""
        return self.input_size // 2 ** (self.blocks + 1)

    @property
    def channels(self) -> list[int]:
        """Encoder channels per block."""
        return [self.init_channels * 2**b for b in range(self.blocks)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VAEConfig":
        check_keys(cls, data, "model config")
        return cls(**dict(data))


#: Reference (TMI 2022 / castor) architecture; LA dropped there, hence 3 classes.
KINDS = ("vae", "beta-vae", "ar-vae", "cvae")


@dataclass
class LossConfig:
    """Which loss terms are used and their weights."""

    kind: str = "vae"
    beta: float = 1e-4          #: KL weight
    capacity: float = 0.0       #: KL capacity C in beta |KL - C|
    gamma: float = 0.1          #: AR-VAE attribute-term weight
    delta: float = 16.0         #: AR-VAE tanh sharpness
    phase_weight: float = 1.0   #: cVAE phase-term weight (not public in the reference)
    ce_weight: float = 0.1
    dice_weight: float = 1.0
    dice_smooth: float = 1.0    #: additive smoothing of the soft Dice (numerator and denominator)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"LossConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("beta", "capacity", "gamma", "delta", "phase_weight", "ce_weight",
                     "dice_weight", "dice_smooth"):
            setattr(self, name, as_float(f"LossConfig.{name}", getattr(self, name)))

    @property
    def uses_attributes(self) -> bool:
        return self.kind == "ar-vae"

    @property
    def uses_phase(self) -> bool:
        return self.kind == "cvae"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LossConfig":
        check_keys(cls, data, "loss config")
        return cls(**dict(data))


@dataclass
class TrainConfig:
    """All hyper-parameters of a training run.

    ``model`` and ``loss`` are nested sections (:class:`VAEConfig`, :class:`LossConfig`).
    ``device``: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    ``amp`` (float16 autocast + GradScaler) only takes effect on CUDA; ``channels_last``
    applies on every device (faster on CPU too, and deterministic; benchmarks/README.md). ``lr_schedule``: "constant"
    or "cosine" (cosine decay from ``lr`` to ``lr * lr_min_factor`` over ``epochs``).
    ``drop_last``: drop the last incomplete training batch (its order changes every epoch).
    ``attribute_names`` / ``class_names`` label the outputs (defaults: the seven
    TMI 2022 attributes, BG/LV/MYO/LA).
    """

    model: VAEConfig = field(default_factory=VAEConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    lr_min_factor: float = 0.05
    drop_last: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    num_threads: int | None = 2         #: torch CPU threads (None: torch's own choice)
    eval_batch_size: int = 256
    attribute_names: list[str] | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = VAEConfig.from_dict(self.model)
        if isinstance(self.loss, Mapping):
            self.loss = LossConfig.from_dict(self.loss)
        if self.loss.kind == "cvae" and not self.model.phase_head:
            # the phase head is part of the cVAE: turn it on so the saved config says so
            self.model = dataclasses.replace(self.model, phase_head=True)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")
        for name in ("lr", "weight_decay", "lr_min_factor"):
            setattr(self, name, as_float(f"TrainConfig.{name}", getattr(self, name)))
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"TrainConfig.lr_schedule must be 'constant' or 'cosine', "
                             f"got {self.lr_schedule!r}")
        if not (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int)
                                             or self.num_threads < 1):
            raise ValueError(f"TrainConfig.num_threads must be null or a positive integer")
        for name in ("amp", "channels_last", "drop_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be a bool")
        if self.attribute_names is not None:
            self.attribute_names = [str(a) for a in self.attribute_names]
        if self.class_names is not None:
            self.class_names = [str(c) for c in self.class_names]
            if len(self.class_names) != self.model.n_classes:
                raise ValueError(f"TrainConfig.class_names has {len(self.class_names)} names "
                                 f"for {self.model.n_classes} classes")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a plain (e.g. YAML/JSON) dict; unknown keys raise ``ValueError``."""
        check_keys(cls, data, "training config")
        data = dict(data)
        if "model" in data:
            data["model"] = VAEConfig.from_dict(data["model"])
        if "loss" in data:
            data["loss"] = LossConfig.from_dict(data["loss"])
        return cls(**data)

    @classmethod
    def coerce(cls, config: "TrainConfig | Mapping[str, Any] | None") -> "TrainConfig":
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        return cls.from_dict(config)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def class_name(self, c: int) -> str:
        if self.class_names is not None:
            return self.class_names[c]
        return CLASS_NAMES[c] if self.model.n_classes <= len(CLASS_NAMES) else f"class_{c}"

    def attribute_name(self, l: int, k: int) -> str:
        names = self.attribute_names
        if names is None and k == len(ATTRIBUTE_NAMES):
            names = ATTRIBUTE_NAMES
        return names[l] if names is not None and l < len(names) else f"attr_{l}"




def study_models(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``models:`` section of a workflow configuration, each entry complete and checked.

    Returns name -> ``{"kind", "attributes", "runtime_minutes", "training"}``, where
    ``training`` is the complete :class:`TrainConfig` dict the trainer receives: the entry's
    ``training`` with ``loss.kind`` set to the entry's ``kind`` and ``model.input_size`` to the
    cohort's ``image_size`` (both stated once, so an entry may not give them). The rest takes
    the dataclasses' defaults. Raises ``ValueError`` naming the model and the key.
    """
    from echolatent.settings import check_section

    image_size = check_section(config.get("cohort") or {}, "cohort")["image_size"]
    models = check_section(config.get("models"), "models")
    out = {}
    for name, entry in models.items():
        training = dict(entry.get("training") or {})
        loss, model = dict(training.get("loss") or {}), dict(training.get("model") or {})
        if "kind" in loss:
            raise ValueError(f"config: models.{name}.training.loss.kind: the loss is the entry's kind "
                             f"(models.{name}.kind)")
        if "input_size" in model:
            raise ValueError(f"config: models.{name}.training.model.input_size: the model grid is "
                             f"cohort.image_size")
        training.update(loss={**loss, "kind": entry["kind"]}, model={**model, "input_size": image_size})
        try:
            complete = TrainConfig.from_dict(training).to_dict()
        except (TypeError, ValueError) as error:
            hint = " (the input size is cohort.image_size)" if "input_size" in str(error) else ""
            raise ValueError(f"config: models.{name}.training: {error}{hint}") from None
        out[name] = {"kind": entry["kind"], "attributes": list(entry["attributes"]),
                     "runtime_minutes": entry["runtime_minutes"], "training": complete}
    return out
