"""Small space modules for tests and benchmarks (their source, to be written to a file)."""

import textwrap

# A space small enough that a trial takes about a second on two CPU cores.
TINY_SPACE = textwrap.dedent('''
    import keras
    from search import data

    def build(hp):
        ds = data.current()
        model = keras.Sequential([
            keras.Input(shape=ds.input_shape),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Int("units", 16, 64, step=16), activation="relu"),
            keras.layers.Dense(ds.num_classes, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 3e-2, sampling="log")),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64]), **kwargs)
''')

# The tiny space trained on a class subset chosen per trial (4 or 10 of the digits), so evaluating
# a trial's model must rebuild the same subset; no fit(): Keras' own batch size.
SUBSET_SPACE = TINY_SPACE.replace(
    "ds = data.current()", 'ds = data.current(classes=hp.Choice("classes", [4, 10]))',
).split("\ndef fit(")[0] + "\n"
