"""Building blocks for space modules: the tuned optimizer, pretrained bases and their heads, and
two-phase (frozen, then fine-tuned) training.

Public, like :mod:`search.data`: the spaces in ``spaces/`` use them and so can a user's own.
Every function declares its hyperparameters on the ``hp`` it is given, with Keras Tuner's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers

from search.errors import DownloadError

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adamax": keras.optimizers.Adamax,
}


def optimizer(hp, default_lr: float = 1e-3, min_lr: float = 1e-5, max_lr: float = 1e-1):
    """``optimizer`` (Adam, SGD, RMSprop, Adagrad, Adamax), ``learning_rate`` (log scale) and, for
    SGD only, ``momentum``."""
    name = hp.Choice("optimizer", list(OPTIMIZERS))
    kwargs = {"learning_rate": hp.Float("learning_rate", min_lr, max_lr, sampling="log",
                                        default=default_lr)}
    with hp.conditional_scope("optimizer", ["sgd"]):
        if name == "sgd":
            kwargs["momentum"] = hp.Float("momentum", 0.0, 0.95, step=0.05, default=0.9)
    return OPTIMIZERS[name](**kwargs)


def batch_size(hp, choices=(16, 32, 64, 128), default: int = 32) -> int:
    return hp.Choice("batch_size", list(choices), default=default)


@dataclass(frozen=True)
class Base:
    """A ``keras.applications`` model usable as a pretrained base."""

    constructor: Callable
    preprocess: Callable  # the base's own ``preprocess_input`` (expects RGB in 0..255)
    min_size: int  # the smallest input side the architecture accepts


def _bases() -> dict[str, Base]:
    apps = keras.applications
    return {
        "vgg16": Base(apps.VGG16, apps.vgg16.preprocess_input, 32),
        "vgg19": Base(apps.VGG19, apps.vgg19.preprocess_input, 32),
        "resnet50": Base(apps.ResNet50, apps.resnet50.preprocess_input, 32),
        "mobilenet_v2": Base(apps.MobileNetV2, apps.mobilenet_v2.preprocess_input, 32),
        "efficientnet_b0": Base(apps.EfficientNetB0, apps.efficientnet.preprocess_input, 32),
        "densenet121": Base(apps.DenseNet121, apps.densenet.preprocess_input, 32),
        "xception": Base(apps.Xception, apps.xception.preprocess_input, 71),
        "inception_v3": Base(apps.InceptionV3, apps.inception_v3.preprocess_input, 75),
    }


BASES = _bases()


def pretrained_base(name: str, weights: str, size: int):
    """The base ``name`` for ``size`` x ``size`` RGB input, frozen. ``weights`` is "imagenet",
    "none" or the path of a weights file (keras.applications' own convention)."""
    base = BASES[name]
    if size < base.min_size:
        raise ValueError(f"resize {size} is below {name}'s minimum input size {base.min_size}: "
                         f"use a resize of at least {base.min_size} or another base")
    try:
        model = base.constructor(include_top=False, weights=None if weights == "none" else weights,
                                 input_shape=(size, size, 3))
    except Exception as exc:
        if weights != "imagenet" or "fetch" not in str(exc):
            raise
        raise DownloadError(f"ImageNet weights for {name} cannot be downloaded here (offline?); "
                            "use --set weights=none or --set weights=PATH") from None
    model.trainable = False
    return model


def apply_base(x, name: str, base):
    """The base's own preprocessing, then the base in inference mode (BatchNorm statistics stay
    frozen, also while fine-tuning, as Keras' transfer-learning guide does)."""
    return base(BASES[name].preprocess(x), training=False)


def head(hp, x, num_classes: int):
    """The classifier head: global average pooling or flatten, a dense layer, dropout, softmax."""
    if hp.Choice("head_pooling", ["global_avg", "flatten"]) == "global_avg":
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.Flatten()(x)
    x = layers.Dense(hp.Choice("head_units", [128, 256, 512], default=256),
                     activation=hp.Choice("head_activation", ["relu", "elu"]))(x)
    dropout = hp.Float("head_dropout", 0.0, 0.5, step=0.1, default=0.2)
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax")(x)


def unfreeze_top(base, count: int) -> None:
    """Make the top ``count`` layers of ``base`` trainable (all others stay frozen)."""
    base.trainable = count > 0
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= len(base.layers) - count


def two_phase_fit(hp, model, base, unfrozen_layers: int, parent: str, enabling: list,
                  *args, **kwargs):
    """Train the head with the base frozen, then unfreeze the top ``unfrozen_layers`` layers and
    go on at a lower learning rate, within the trial's epochs. ``parent`` is the hyperparameter
    that chose how much to unfreeze and ``enabling`` its values that unfreeze anything: the
    phase's own hyperparameters (``head_epochs``, ``fine_tune_lr_factor``) are conditional on it."""
    epochs = kwargs.pop("epochs", 1)
    batch = batch_size(hp)
    with hp.conditional_scope(parent, enabling):
        if unfrozen_layers > 0:
            head_epochs = hp.Int("head_epochs", 1, 5, default=2)
            factor = hp.Choice("fine_tune_lr_factor", [0.1, 0.01], default=0.1)
    if unfrozen_layers <= 0 or epochs < 2:
        return model.fit(*args, batch_size=batch, epochs=epochs, **kwargs)
    head_epochs = min(head_epochs, epochs - 1)
    model.fit(*args, batch_size=batch, epochs=head_epochs, **kwargs)
    unfreeze_top(base, unfrozen_layers)
    config = model.optimizer.get_config()
    config["learning_rate"] = float(hp.get("learning_rate")) * factor
    model.compile(optimizer=type(model.optimizer).from_config(config), loss=model.loss,
                  metrics=["accuracy"])
    return model.fit(*args, batch_size=batch, epochs=epochs, initial_epoch=head_epochs, **kwargs)
