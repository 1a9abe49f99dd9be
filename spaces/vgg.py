"""VGG16/VGG19 transfer learning, as our users ran it on CIFAR-100 class subsets.

Tunes the base (VGG16, VGG19) and its weights (ImageNet or none), the number of classes (20, 40,
60, 80 where the data has them), input resize, augmentation (flip, rotation, shift, zoom), the
head (global pooling or flatten, dense units, activation, dropout), how many of the base's five
conv blocks to fine-tune (0 = frozen base ... 5 = all), two-phase training (the head first with
the base frozen, then fine-tuning at a lower learning rate), optimizer, learning rate, batch size.

    search start spaces/vgg.py --trials 50                       # CIFAR-100 (downloads once)
    search start spaces/vgg.py --data digits --set weights=none --trials 2 --epochs 2   # offline
"""

import keras

from search import blocks, data

DATA = "cifar100"
OBJECTIVE = "val_accuracy"
BLOCKS = 5  # both VGGs have five conv blocks, named block1_* .. block5_*


def build(hp):
    dataset = data.tuned_classes(hp)
    name = hp.Choice("base", ["vgg16", "vgg19"])
    weights = hp.Choice("weights", ["imagenet", "none"])
    size = hp.Choice("resize", [32, 64, 128, 224], default=32)

    inputs = keras.Input(shape=dataset.input_shape)
    x = data.augment(hp, inputs)
    x = data.to_rgb(data.resize(x, size))
    base = blocks.pretrained_base(name, weights, size)
    x = blocks.apply_base(x, name, base)
    outputs = blocks.head(hp, x, dataset.num_classes)
    model = keras.Model(inputs, outputs)
    hp.Int("fine_tune_blocks", 0, BLOCKS, default=1)
    model.compile(optimizer=blocks.optimizer(hp, default_lr=1e-3, max_lr=1e-2),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    name = hp.get("base")
    base = model.get_layer(name)
    top = {f"block{i}" for i in range(BLOCKS - hp.get("fine_tune_blocks") + 1, BLOCKS + 1)}
    unfrozen = sum(1 for layer in base.layers if layer.name.split("_")[0] in top)
    return blocks.two_phase_fit(hp, model, base, unfrozen, "fine_tune_blocks",
                                list(range(1, BLOCKS + 1)), *args, **kwargs)
