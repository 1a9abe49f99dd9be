"""Helpers for space modules: the trial's data set, class subsets, resize, augmentation.

- :func:`current` the trial's data set (input shape, number of classes); ``current(classes=K)``
  trains the trial on a subset of K classes (chosen by the study's seed, the same in every worker,
  labels remapped to 0..K-1), e.g. ``data.current(classes=hp.Choice("classes", [20, 40, 60, 80]))``;
- :func:`tuned_classes`: the same with ``classes`` declared as a hyperparameter;
- :func:`resize` and :func:`augment`: input resize and augmentation as Keras preprocessing layers
  inside the model, so they run on the fly (augmentation only in training) and no resized copy of
  the data is ever made;
- :func:`to_rgb`: grey images to three channels for ImageNet bases.

Which data sets exist and how they are split: ``search._datasets``.
"""

from __future__ import annotations

from search._datasets import DEFAULT_DATA, Dataset, select, subset

__all__ = ["DEFAULT_DATA", "Dataset", "augment", "current", "resize", "subset", "to_rgb",
           "tuned_classes"]


def current(classes: int | None = None) -> Dataset:
    """The data set of the trial being built (for a space's ``build(hp)``).

    ``classes=K`` selects a subset of K classes for this trial: the trial trains, validates and is
    tested on those classes only, with labels 0..K-1.
    """
    return select(classes)


def tuned_classes(hp, choices=(20, 40, 60, 80)) -> Dataset:
    """The trial's data set with ``classes`` as a hyperparameter: the choices below the data
    set's number of classes (CIFAR-100 users ran 20, 40, 60, 80). Where none is, the whole set."""
    usable = [k for k in choices if 2 <= k < current().num_classes]
    return current(classes=hp.Choice("classes", usable)) if usable else current()


def resize(x, size: int | None):
    """Resize images to ``size`` x ``size`` inside the model (on the fly, per batch)."""
    from keras import layers

    if not size or tuple(x.shape[1:3]) == (size, size):
        return x
    return layers.Resizing(int(size), int(size), name=f"resize_{size}")(x)


def augment(hp, x):
    """Data augmentation as hyperparameters: horizontal flip, rotation, width/height shift and zoom,
    as Keras preprocessing layers (active only in training). All are off by default."""
    from keras import layers

    if hp.Boolean("flip", default=False):
        x = layers.RandomFlip("horizontal")(x)
    rotation = hp.Float("rotation", 0.0, 0.2, step=0.05, default=0.0)
    if rotation:
        x = layers.RandomRotation(rotation)(x)
    width_shift = hp.Float("width_shift", 0.0, 0.2, step=0.05, default=0.0)
    height_shift = hp.Float("height_shift", 0.0, 0.2, step=0.05, default=0.0)
    if width_shift or height_shift:
        x = layers.RandomTranslation(height_shift, width_shift)(x)
    zoom = hp.Float("zoom", 0.0, 0.3, step=0.05, default=0.0)
    if zoom:
        x = layers.RandomZoom(zoom)(x)
    return x


def to_rgb(x):
    """Grey images (one channel) to three channels, for bases pretrained on RGB images."""
    from keras import layers

    return layers.Concatenate(name="grey_to_rgb")([x, x, x]) if x.shape[-1] == 1 else x
