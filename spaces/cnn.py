"""A tunable CNN trained from scratch: the first model every study of ours starts with.

Runs on any image data (digits by default; ``--data cifar100`` etc.): depth, filters, kernel size,
batch norm, dropout, L2 weight decay, activation, pooling, dense head, optimizer, learning rate
and batch size are all hyperparameters.
"""

import keras
from keras import layers, regularizers

from search import data

DATA = "digits"
OBJECTIVE = "val_accuracy"

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adamax": keras.optimizers.Adamax,
}


def build(hp):
    dataset = data.current()
    blocks = hp.Int("conv_blocks", 1, 3, default=2)
    convs = hp.Int("convs_per_block", 1, 2)
    filters = hp.Choice("filters", [16, 32, 64], default=32)
    kernel = hp.Choice("kernel_size", [3, 5])
    batch_norm = hp.Boolean("batch_norm")
    activation = hp.Choice("activation", ["relu", "elu", "leaky_relu"])
    conv_dropout = hp.Float("conv_dropout", 0.0, 0.5, step=0.1)
    l2 = hp.Choice("l2", [0.0, 1e-5, 1e-4, 1e-3])
    regularizer = regularizers.L2(l2) if l2 else None

    inputs = keras.Input(shape=dataset.input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for block in range(blocks):
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

    optimizer = hp.Choice("optimizer", list(OPTIMIZERS))
    learning_rate = hp.Float("learning_rate", 1e-5, 1e-1, sampling="log", default=3e-3)
    kwargs = {"learning_rate": learning_rate}
    with hp.conditional_scope("optimizer", ["sgd"]):
        if optimizer == "sgd":
            kwargs["momentum"] = hp.Float("momentum", 0.0, 0.95, step=0.05, default=0.9)
    model.compile(optimizer=OPTIMIZERS[optimizer](**kwargs),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32, 64, 128], default=32), **kwargs)
