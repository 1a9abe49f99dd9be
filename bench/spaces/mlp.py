"""A small dense network on flattened images: the second, cheaper space of the efficiency benchmark.

Tunes depth, width, activation, dropout, optimizer (sgd with a conditional momentum), learning rate
and batch size, so a sampler has conditional and log-scale parameters to deal with.
"""

import keras
from keras import layers

from search import blocks, data

DATA = "digits"
OBJECTIVE = "val_accuracy"


def build(hp):
    ds = data.current()
    x = inputs = keras.Input(shape=ds.input_shape)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Flatten()(x)
    activation = hp.Choice("activation", ["relu", "tanh", "elu"])
    for i in range(hp.Int("layers", 1, 3)):
        x = layers.Dense(hp.Int(f"units_{i}", 16, 256, step=16, default=64), activation=activation)(x)
        dropout = hp.Float(f"dropout_{i}", 0.0, 0.5, step=0.1, default=0.0)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(ds.num_classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=blocks.optimizer(hp, default_lr=1e-3, min_lr=1e-4, max_lr=1e-1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    return model.fit(*args, batch_size=blocks.batch_size(hp, choices=(16, 32, 64, 128), default=32),
                     **kwargs)
