"""A tunable CNN trained from scratch: the first model every study of ours starts with.

Tunes depth (conv blocks, convs per block), filters, kernel size, batch norm, dropout after each
block, L1/L2 weight decay, activation (relu, elu, leaky relu), global pooling vs flatten, the dense
head's units and dropout, optimizer, learning rate, batch size and the input resize (the images'
side times 1, 2 or 4: 8, 16, 32 on digits). The number of classes trained on is a condition, swept
rather than optimised (``CONDITIONS``: each trial in turn trains on 3, 6 or 10 classes, and
``search analyze`` reports each); ``--set classes=K`` trains on K classes only (up to 80 of
CIFAR-100's).

    search start spaces/cnn.py --trials 4 --epochs 5            # offline (digits, embedded)
    search start spaces/cnn.py --data cifar100 --trials 50      # CIFAR-100 class subsets
"""

import keras
from keras import layers, regularizers

from search import blocks, data

DATA = "digits"
OBJECTIVE = "val_accuracy"
CONDITIONS = {"classes": [3, 6, 10]}
CLASS_CHOICES = (3, 6, 10, 20, 40, 60, 80)


def weight_decay(hp):
    kind = hp.Choice("weight_decay", ["none", "l1", "l2"], default="none")
    with hp.conditional_scope("weight_decay", ["l1", "l2"]):
        if kind != "none":
            rate = hp.Float("decay_rate", 1e-6, 1e-3, sampling="log", default=1e-4)
            return regularizers.L1(rate) if kind == "l1" else regularizers.L2(rate)
    return None


def build(hp):
    total = data.current().num_classes
    usable = [k for k in CLASS_CHOICES if k <= total]
    dataset = data.current(classes=hp.Choice("classes", usable, default=usable[-1])) if usable else data.current()
    side = dataset.input_shape[0]
    resize = hp.Choice("resize", [side, 2 * side, 4 * side], default=side)
    blocks_count = hp.Int("conv_blocks", 1, 3, default=2)
    convs = hp.Int("convs_per_block", 1, 2)
    filters = hp.Choice("filters", [16, 32, 64], default=32)
    kernel = hp.Choice("kernel_size", [3, 5])
    batch_norm = hp.Boolean("batch_norm")
    activation = hp.Choice("activation", ["relu", "elu", "leaky_relu"])
    conv_dropout = hp.Float("conv_dropout", 0.0, 0.5, step=0.1)
    regularizer = weight_decay(hp)

    inputs = keras.Input(shape=dataset.input_shape)
    x = layers.Rescaling(1.0 / 255)(data.resize(inputs, resize))
    for block in range(blocks_count):
        for _ in range(convs):
            x = layers.Conv2D(filters * 2**block, kernel, padding="same",
                              use_bias=not batch_norm, kernel_regularizer=regularizer)(x)
            if batch_norm:
                x = layers.BatchNormalization()(x)
            x = layers.Activation(activation)(x)
        x = layers.MaxPooling2D(padding="same")(x)
        if conv_dropout:
            x = layers.Dropout(conv_dropout)(x)

    if hp.Choice("pooling", ["global_avg", "flatten"]) == "global_avg":
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.Flatten()(x)
    x = layers.Dense(hp.Choice("dense_units", [64, 128, 256]), activation=activation,
                     kernel_regularizer=regularizer)(x)
    dense_dropout = hp.Float("dense_dropout", 0.0, 0.5, step=0.1)
    if dense_dropout:
        x = layers.Dropout(dense_dropout)(x)
    outputs = layers.Dense(dataset.num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=blocks.optimizer(hp, default_lr=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    return model.fit(*args, batch_size=blocks.batch_size(hp), **kwargs)
