"""A convolutional autoencoder pre-trained on reconstruction, then its encoder fine-tuned as a
classifier, in one trial (as one of our user groups did on MNIST).

Tunes filters, kernel size, depth (conv blocks), batch size and learning rate. Each trial trains
the autoencoder on reconstruction (its own epochs, recorded as ``reconstruction_loss`` and
``val_reconstruction_loss``), then the classifier on the encoder: a frozen-encoder phase and an
unfrozen phase at a tenth of the learning rate. The objective is the classifier's val_accuracy.

    search start spaces/autoencoder.py --data mnist --trials 30
    search start spaces/autoencoder.py --data digits --trials 2 --epochs 2     # offline
"""

import keras
from keras import layers

from search import blocks, data

DATA = "mnist"
OBJECTIVE = "val_accuracy"


def encoder(hp, input_shape):
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    filters = hp.Choice("filters", [16, 32, 64], default=32)
    kernel = hp.Choice("kernel_size", [3, 5])
    for block in range(hp.Int("depth", 1, 3, default=2)):
        x = layers.Conv2D(filters * 2**block, kernel, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(padding="same")(x)
    return keras.Model(inputs, x, name="encoder")


def decoder(encoded, dataset, kernel: int):
    """Mirror of the encoder: upsample back to the input size, one conv per block."""
    x = encoded
    size = encoded.shape[1]
    while size < dataset.input_shape[0]:
        x = layers.Conv2DTranspose(encoded.shape[-1], kernel, strides=2, padding="same",
                                   activation="relu")(x)
        size *= 2
    x = layers.Conv2D(dataset.input_shape[-1], kernel, padding="same", activation="sigmoid")(x)
    return layers.Resizing(*dataset.input_shape[:2])(x)


def reconstruction_loss(images, decoded):
    """Mean squared error against the images scaled to 0..1 (scaled per batch, not copied)."""
    return keras.losses.mean_squared_error(keras.ops.cast(images, "float32") / 255.0, decoded)


def build(hp):
    dataset = data.current()
    inputs = keras.Input(shape=dataset.input_shape)
    x = layers.Flatten()(encoder(hp, dataset.input_shape)(inputs))
    x = layers.Dense(hp.Choice("dense_units", [64, 128]), activation="relu")(x)
    outputs = layers.Dense(dataset.num_classes, activation="softmax")(x)
    classifier = keras.Model(inputs, outputs, name="classifier")
    classifier.compile(optimizer=blocks.optimizer(hp, default_lr=1e-3),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return classifier


def fit(hp, classifier, x, y, *, validation_data, epochs, callbacks=(), **kwargs):
    batch = blocks.batch_size(hp)
    enc = classifier.get_layer("encoder")
    learning_rate = float(hp.get("learning_rate"))

    # 1. Reconstruction: the encoder with a decoder, the uint8 inputs as targets.
    autoencoder = keras.Model(enc.input, decoder(enc.output, data.current(), hp.get("kernel_size")))
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=reconstruction_loss)
    x_val = validation_data[0]
    pretrain = autoencoder.fit(x, x, validation_data=(x_val, x_val),
                               batch_size=batch, epochs=max(1, epochs // 2), verbose=0)

    # 2. The classifier with the pre-trained encoder frozen, then 3. unfrozen at a lower rate.
    frozen_epochs = max(1, epochs // 2)
    enc.trainable = False
    classifier.compile(optimizer=type(classifier.optimizer).from_config(classifier.optimizer.get_config()),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    classifier.fit(x, y, validation_data=validation_data, batch_size=batch,
                   epochs=min(frozen_epochs, epochs), callbacks=callbacks, **kwargs)
    if epochs > frozen_epochs:
        enc.trainable = True
        config = classifier.optimizer.get_config() | {"learning_rate": learning_rate / 10}
        classifier.compile(optimizer=type(classifier.optimizer).from_config(config),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        classifier.fit(x, y, validation_data=validation_data, batch_size=batch, epochs=epochs,
                       initial_epoch=frozen_epochs, callbacks=callbacks, **kwargs)
    return {"reconstruction_loss": pretrain.history["loss"][-1],
            "val_reconstruction_loss": pretrain.history["val_loss"][-1]}
