"""Transfer learning over keras.applications bases: ResNet50, MobileNetV2, EfficientNetB0,
DenseNet121, Xception, InceptionV3 (and the VGGs), each with its own preprocessing.

Tunes the base and its weights (ImageNet or none), the number of classes where the data has more
than 20, input resize (a size below the base's minimum input, such as 64 for Xception or
InceptionV3, fails that trial with the reason), augmentation, the head, the fraction of the base's
layers fine-tuned (0 = frozen ... 1 = all) with two-phase training, optimizer, learning rate and
batch size.

    search start spaces/transfer.py --data cifar100 --trials 50
    search start spaces/transfer.py --data digits --set weights=none --set base=mobilenet_v2 --trials 2 --epochs 2  # offline
"""

import keras

from search import blocks, data

DATA = "cifar100"
OBJECTIVE = "val_accuracy"
BASES = ["resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121", "xception", "inception_v3"]


def build(hp):
    dataset = data.tuned_classes(hp)
    name = hp.Choice("base", BASES, default="mobilenet_v2")
    weights = hp.Choice("weights", ["imagenet", "none"])
    size = hp.Choice("resize", [32, 64, 96, 128, 224], default=96)

    inputs = keras.Input(shape=dataset.input_shape)
    x = data.augment(hp, inputs)
    x = data.to_rgb(data.resize(x, size))
    base = blocks.pretrained_base(name, weights, size)
    x = blocks.apply_base(x, name, base)
    outputs = blocks.head(hp, x, dataset.num_classes)
    model = keras.Model(inputs, outputs)
    hp.Choice("fine_tune_fraction", [0.0, 0.1, 0.25, 0.5, 1.0], default=0.1)
    model.compile(optimizer=blocks.optimizer(hp, default_lr=1e-3, max_lr=1e-2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    fraction = hp.get("fine_tune_fraction")
    unfrozen = round(fraction * len(base.layers))
    return blocks.two_phase_fit(hp, model, base, unfrozen, "fine_tune_fraction",
                                [0.1, 0.25, 0.5, 1.0], *args, **kwargs)
