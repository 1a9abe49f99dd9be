"""Loading space modules: every broken space is one line naming the file and the cause."""

import signal
import textwrap
import time
from pathlib import Path

import pytest

from search import _datasets
from search.errors import SpaceError
from search.space.loader import discover, load_space, validate_fixed
from search.testing.cli import REPO

GOOD_BUILD = '''
import keras
from search import _datasets, data
def build(hp):
    ds = data.current()
    model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(ds.num_classes, activation="softmax")])
    opt = hp.Choice("optimizer", ["adam", "sgd"])
    with hp.conditional_scope("optimizer", ["sgd"]):
        if opt == "sgd":
            hp.Float("momentum", 0.0, 0.9)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


def write(tmp_path, source, name="space.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


@pytest.mark.parametrize("source, message", [
    ("def build(hp)\n    return None\n", "syntax error at line 1"),
    ("import no_such_module_here\n", "importing the space raised ModuleNotFoundError"),
    ("x = 1\n", "defines no hypermodel"),
    ("HYPERMODEL = 3\n", "HYPERMODEL must be a keras_tuner.HyperModel"),
])
def test_broken_spaces_are_one_line_errors(tmp_path, source, message):
    path = write(tmp_path, source)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    text = str(err.value)
    assert message in text and path in text and "\n" not in text


def test_build_raising_is_reported_at_discovery(tmp_path):
    space = load_space(write(tmp_path, "def build(hp):\n    raise RuntimeError('no model for you')\n"))
    with pytest.raises(SpaceError) as err:
        discover(space, _datasets.load("digits"))
    assert "build() raised RuntimeError: no model for you" in str(err.value)


def test_discovery_opens_conditional_scopes_and_keeps_defaults(tmp_path):
    space = load_space(write(tmp_path, GOOD_BUILD))
    found = discover(space, _datasets.load("digits"))
    assert {hp.name for hp in found.hyperparameters.space} == {"optimizer", "momentum"}
    assert found.defaults == {"optimizer": "adam"}
    with pytest.raises(SpaceError, match="defines no hyperparameter 'nope'.*momentum, optimizer"):
        validate_fixed(found.hyperparameters, {"nope": "1"})
    assert validate_fixed(found.hyperparameters, {"momentum": "0.5"}) == {"momentum": 0.5}


def test_hypermodel_subclass_and_fit_parameters_are_found(tmp_path):
    source = '''
        import keras, keras_tuner
        from search import _datasets, data
        class Net(keras_tuner.HyperModel):
            def build(self, hp):
                ds = data.current()
                model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                                          keras.layers.Dense(hp.Int("units", 8, 32, step=8)),
                                          keras.layers.Dense(ds.num_classes, activation="softmax")])
                model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
                return model

            def fit(self, hp, model, *args, **kwargs):
                return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 32]), **kwargs)
    '''
    space = load_space(write(tmp_path, source))
    assert space.custom_fit
    found = discover(space, _datasets.load("digits"))
    assert {hp.name for hp in found.hyperparameters.space} == {"units", "batch_size"}


def test_the_cnn_space_loads_and_discovers():
    space = load_space(str(REPO / "spaces" / "cnn.py"))
    assert space.objective.name == "val_accuracy" and space.objective.direction == "max"
    names = {hp.name for hp in discover(space, _datasets.load("digits")).hyperparameters.space}
    assert {"learning_rate", "optimizer", "batch_size", "momentum", "filters", "conv_blocks"} <= names


def test_the_study_objective_is_the_option_then_the_space_then_keras_tuners_defaults(tmp_path):
    from search.errors import SearchError
    from search.space.loader import study_objective

    path = tmp_path / "s.py"
    path.write_text("def build(hp):\n    pass\n")
    plain = load_space(str(path))
    path.write_text("import keras_tuner\nOBJECTIVE = keras_tuner.Objective('val_custom', 'max')\n"
                    "def build(hp):\n    pass\n")
    declared = load_space(str(path))

    def pick(space, *args):
        objective = study_objective(space, *args)
        return objective.name, objective.direction

    assert pick(plain, None, None, "history") == ("val_accuracy", "max")
    assert pick(plain, None, None, "number") == ("default_objective", "min")  # Keras Tuner's default
    assert pick(declared, None, None, "number") == ("val_custom", "max")
    assert pick(declared, "val_loss", None, "history") == ("val_loss", "min")  # inferred as Keras Tuner does
    assert pick(declared, "val_custom", None, "history") == ("val_custom", "max")  # the space's direction
    assert pick(plain, "val_custom", "min", "history") == ("val_custom", "min")
    with pytest.raises(SearchError, match="the direction of an unknown metric cannot be inferred"):
        study_objective(plain, "val_custom", None, "history")


def test_labels_and_a_build_function_as_hypermodel(tmp_path):
    path = tmp_path / "s.py"
    path.write_text("LABELS = 'one_hot'\ndef build_model(hp):\n    pass\nHYPERMODEL = build_model\n")
    space = load_space(str(path))
    assert space.labels == "one_hot" and space.hypermodel._build_fn.__name__ == "build_model"
    path.write_text("LABELS = 'onehot'\ndef build(hp):\n    pass\n")
    with pytest.raises(SpaceError, match="LABELS must be one of 'sparse', 'one_hot'"):
        load_space(str(path))


def test_a_space_file_with_a_byte_order_mark_loads_as_python_runs_it(tmp_path):
    from search.space.source import read_source, source_sha256

    plain = write(tmp_path, GOOD_BUILD, "plain.py")
    marked = tmp_path / "marked.py"
    marked.write_bytes(b"\xef\xbb\xbf" + Path(plain).read_bytes())  # what some editors save
    space = load_space(str(marked))
    assert space.hypermodel is not None
    assert source_sha256(read_source(str(marked))) == source_sha256(read_source(str(plain)))


BUILD_MODEL = '''
import keras
from search import data
def build_model(hp):
    ds = data.current()
    model = keras.Sequential([keras.Input(shape=ds.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(hp.Int("units", 8, 16, step=8)),
                              keras.layers.Dense(ds.num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
'''


@pytest.mark.parametrize("source", [
    BUILD_MODEL,  # the keras-io guides' name
    BUILD_MODEL + "hypermodel = build_model\n",  # a lower-case hypermodel = <build function>
    BUILD_MODEL.replace("def build_model", "def make") + "import keras_tuner\n"
    "class Wrapped(keras_tuner.HyperModel):\n    def build(self, hp):\n        return make(hp)\n"
    "hypermodel = Wrapped()\n",  # a lower-case hypermodel = <instance>
])
def test_the_guides_names_are_found(tmp_path, source):
    space = load_space(write(tmp_path, source))
    found = discover(space, _datasets.load("digits"))
    assert {hp.name for hp in found.hyperparameters.space} == {"units"}


def test_no_hypermodel_lists_what_the_module_defines(tmp_path):
    source = '''
        import keras_tuner
        def make_model(hp):
            return None
        class Helper:
            pass
        tuned = keras_tuner.applications.HyperResNet(input_shape=(8, 8, 3), classes=2)
        '''
    with pytest.raises(SpaceError) as err:
        load_space(write(tmp_path, source))
    text = str(err.value)
    assert "defines no hypermodel" in text
    assert "it defines make_model(), Helper (class), tuned (HyperResNet instance)" in text


def test_hypermodel_names_a_class_not_an_instance(tmp_path):
    source = "import keras_tuner\nclass Net(keras_tuner.HyperModel):\n    pass\nhypermodel = Net\n"
    with pytest.raises(SpaceError, match="hypermodel is the class Net: set it to an instance, Net()"):
        load_space(write(tmp_path, source))


def test_a_space_whose_import_never_returns_is_stopped_with_where_it_hung(tmp_path, monkeypatch):
    from search.space.loader import IMPORT_TIMEOUT_ENV, space_from_source

    monkeypatch.setenv(IMPORT_TIMEOUT_ENV, "1")
    path = str(tmp_path / "stuck.py")
    # the first alarm swallowed, as a library's import machinery may: the next one stops it
    source = ("import time\n\ndef fetch():\n    try:\n        time.sleep(60)\n"
              "    except BaseException:\n        time.sleep(60)\n\nfetch()\n")
    started = time.monotonic()
    with pytest.raises(SpaceError) as caught:
        space_from_source(source, path)
    assert time.monotonic() - started < 10
    assert str(caught.value) == (f"{path}: importing the space did not finish in 1 s "
                                 "(SEARCH_SPACE_IMPORT_TIMEOUT); it was at line 7 in fetch (stuck.py): "
                                 "time.sleep(60)")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind
