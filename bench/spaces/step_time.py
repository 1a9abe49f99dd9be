"""The models of the per-step timing benchmark (bench/throughput.py, GPU part): a simple CNN and
VGG16 (random weights, nothing downloaded) on 32x32 images, batch 128. ``model`` picks one
(``--set model=vgg16``); nothing else is tuned, so a study of it times one fixed model.
"""

import keras
from keras import layers

from search import data

DATA = "digits"  # the benchmark passes --data with a 32x32x3 .npz of its own
OBJECTIVE = "val_accuracy"
BATCH_SIZE = 128


def simple_cnn(inputs, num_classes):
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return layers.Dense(num_classes, activation="softmax")(x)


def vgg16(inputs, num_classes):
    x = keras.applications.vgg16.preprocess_input(inputs)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=inputs.shape[1:])
    x = base(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    return layers.Dense(num_classes, activation="softmax")(x)


def build(hp):
    ds = data.current()
    name = hp.Choice("model", ["simple_cnn", "vgg16"])
    inputs = keras.Input(shape=ds.input_shape)
    outputs = (simple_cnn if name == "simple_cnn" else vgg16)(inputs, ds.num_classes)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def fit(hp, model, *args, **kwargs):
    return model.fit(*args, batch_size=BATCH_SIZE, **kwargs)
