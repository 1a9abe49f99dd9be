"""Every option of ``search start`` (and the placement options ``search worker`` shares), defined once.

Each :class:`Option` says its name (the Python keyword, the stored key and, with dashes, the
command-line flag), its type, default, help text, check, and whether and how it is stored with the
study: ``"fixed"`` (set when the study is created; a resume that contradicts it is refused),
``"changeable"`` (a resume may change it) or not at all (where and how long this start runs).
The CLI builds its click options from :data:`START_OPTIONS`, the API checks keywords against it
(:func:`start_options`), and the stored :class:`StudyConfig` carries the stored ones.

Adding an option: one :class:`Option` here (plus a field of :class:`StudyConfig` when it is
stored), then the code that uses it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from search.errors import SearchError

DEFAULT_STORAGE = "sqlite:///search.db"
STORAGE_ENV = "SEARCH_STORAGE"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "asha")
DIRECTIONS = ("min", "max")
DEFAULT_MAX_CONSECUTIVE_FAILURES = 3  # Keras Tuner's max_consecutive_failed_trials


class OptionError(SearchError):
    """A bad option value. ``str()`` names the option as the Python API does (``trials``);
    :meth:`as_flag` as the command line does (``--trials``)."""

    def __init__(self, option: Option, problem: str):
        self.option, self.problem = option, problem
        super().__init__(self._text(option.name))

    def _text(self, label: str) -> str:
        return f"{label} {self.problem}" if self.option.labelled else self.problem

    def as_flag(self) -> str:
        return self._text(option_flag(self.option.name))


# A study name: what ``search start --study`` (or the space file's stem) may be. Any printable
# text, "/" and ".." included: files named after a study use :func:`study_file_name`.
MAX_STUDY_NAME = 200


def check_study_name(name: str) -> None:
    """Refuse a name no command could work with (one line: what is allowed)."""
    problem = None
    if not name.strip():
        problem = "it is empty"
    elif len(name) > MAX_STUDY_NAME:
        problem = f"it has {len(name)} characters"
    elif not name.isprintable():
        problem = "it holds a control character (a newline, a tab, ...)"
    if problem:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise SearchError(f"study name {shown!r}: {problem}; a study name is 1 to {MAX_STUDY_NAME} "
                          "printable characters (letters, digits, spaces, punctuation)")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def study_file_name(name: str, max_length: int = 120) -> str:
    """A file name (no folder, no extension) for the study ``name``, different for every name:
    a plain name (letters, digits, ``_ - .``, not starting with a dot) as it is; any other
    percent-encoded (``a/b`` -> ``a%2Fb``, ``..`` -> ``%2E.``); one longer than ``max_length``
    cut there and ended with ``~`` and a hash of the whole name."""
    if _PLAIN_NAME.fullmatch(name) and len(name) <= max_length:
        return name
    quoted = urllib.parse.quote(name, safe="-_.").replace("~", "%7E")
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) <= max_length:
        return quoted
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{quoted[:max_length - len(digest) - 1]}~{digest}"


def resolve_storage(url: str | None) -> str:
    """The storage URL in force: the explicit one, else ``$SEARCH_STORAGE``, else the default."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def option_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be at least {low} (got {v})"


# The largest trial budget a store holds (PostgreSQL's INTEGER, the budget's column).
MAX_TRIALS = 2**31 - 1


def between(low: int, high: int, why: str) -> Callable[[Any], str | None]:
    return lambda v: (f"must be at least {low} (got {v})" if v < low else
                      f"must be at most {high} ({why}; got {v})" if v > high else None)


# The longest span of seconds an option takes (about 31 years): within what timers and waits
# accept (setitimer, threading's TIMEOUT_MAX) on every platform.
MAX_SECONDS = 10**9


def at_least_seconds(low: int) -> Callable[[Any], str | None]:
    return lambda v: (f"must be at least {low} second (got {v})" if v < low else
                      f"must be at most {MAX_SECONDS} seconds (got {v})" if v > MAX_SECONDS else None)


def positive_seconds(v) -> str | None:
    if not (v > 0 and math.isfinite(v)):
        return f"must be a positive number of seconds (got {v:g})"
    return f"must be at most {MAX_SECONDS} seconds (got {v:g})" if v > MAX_SECONDS else None


def zero_or_more(v) -> str | None:
    return None if v >= 0 else f"must be 0 or more (got {v})"


def count_of_trials(v) -> str | None:
    """A count of a study's trials (retries, kept checkpoints, failures in a row): 0 or more, and
    no more than a study holds."""
    return zero_or_more(v) or (f"must be at most {MAX_TRIALS} (a study's most trials; got {v})"
                               if v > MAX_TRIALS else None)


# The seeds NumPy (and so Keras, scikit-learn and Optuna's samplers) take: 0 to 2**32 - 1. The
# seeds derived from the study's (a worker's, a trial's) are folded into the same range.
MAX_SEED = 2**32 - 1


def one_of(choices: tuple[str, ...], what: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"unknown {what} {v!r}: use one of {', '.join(choices)}"


def normalize_location(location: str | None) -> str | None:
    """``--artifacts`` as stored: an absolute folder, or an s3:// URL; checked for form."""
    if location is None:
        return None
    location = location.strip()
    if not location:
        raise SearchError("--artifacts is empty: give a folder or s3://bucket[/prefix]")
    if location.startswith("s3://"):
        if not location[len("s3://"):].split("/", 1)[0]:
            raise SearchError(f"--artifacts {location}: no bucket (expected s3://bucket[/prefix])")
        return location
    if "://" in location and not location.startswith("file://"):
        raise SearchError(f"--artifacts {location}: unsupported scheme (use a folder, file:// or s3://)")
    return os.path.abspath(location.removeprefix("file://"))


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    help: str
    default: Any = None  # the value a new study takes when the option is not given
    stored: str | None = None  # "fixed", "changeable" or None
    check: Callable[[Any], str | None] | None = None  # the problem with a value, or None
    normalize: Callable[[Any], Any] | None = None  # the value as used and stored
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    labelled: bool = True  # the problem follows the option's name ("trials must be ...")

    def checked(self, value):
        """``value`` checked and normalised (None stays None: not given)."""
        if value is None:
            return None
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise OptionError(self, problem)
        return self.normalize(value) if self.normalize else value


START_OPTIONS: tuple[Option, ...] = (
    Option("study", str, "Study name (default: the space file's stem)."),
    Option("storage", str, "Study store (default: $SEARCH_STORAGE, else sqlite:///search.db).",
           metavar="URL"),
    Option("trials", int, "The study's total trial budget (all workers).", default=10,
           check=between(1, MAX_TRIALS, "the store's integer")),
    Option("epochs", int, "Maximum epochs per trial.", default=10, stored="fixed",
           check=between(1, MAX_TRIALS, "the store's integer, an epoch's step")),
    Option("workers", int, "Local worker processes (default: one per GPU, else 1).",
           check=at_least(1)),
    Option("data", str, "Data set name or .npz path.", stored="fixed", metavar="NAME_OR_PATH"),
    Option("sampler", str, "Optuna sampler.", default="tpe", stored="fixed", choices=SAMPLERS,
           check=one_of(SAMPLERS, "sampler"), labelled=False),
    Option("seed", int, "Seed for splits, samplers and weights.", default=0, stored="fixed",
           check=between(0, MAX_SEED, "the seeds NumPy takes")),
    Option("pruner", str, "Optuna pruner, fed each epoch's objective (default: median).",
           default="median", stored="fixed", choices=PRUNERS, check=one_of(PRUNERS, "pruner"),
           labelled=False),
    Option("timeout", float, "The study's wall-clock budget from now, for every worker: no trial "
           "starts after it.", check=positive_seconds, metavar="SECONDS"),
    Option("gpus", str, "GPUs for local workers, one process each (default: every visible GPU).",
           metavar="0,1"),
    Option("per_gpu", int, "Worker processes per GPU (or CPU workers where there is no GPU).",
           check=at_least(1), metavar="K"),
    Option("ray", str, "Place the workers as Ray tasks on this Ray cluster (an address, or auto) "
           "instead of local processes; --workers N and --per-gpu K (1/K of a GPU each) as here.",
           metavar="ADDRESS|auto"),
    # Heartbeats: a worker stamps its running trial every HEARTBEAT seconds; a trial whose stamp
    # is older than GRACE seconds is failed and retried (Optuna's RDB heartbeat). The grace period
    # must outlast a store restart and a busy machine's scheduling delays, hence several heartbeats.
    Option("heartbeat", int, "Heartbeat interval of running trials (default 10).", default=10,
           stored="changeable", check=at_least_seconds(1), metavar="SECONDS"),
    Option("grace", int, "A trial without a heartbeat for this long is failed and retried "
           "(default 60).", default=60, stored="changeable", check=at_least_seconds(1),
           metavar="SECONDS"),
    Option("max_retry", int, "How often a trial whose worker died is run again (default 3).",
           default=3, stored="changeable", check=count_of_trials, metavar="N"),
    Option("keep_best", int, "Keep the best-epoch weights of the K best trials (default 3; 0: none).",
           default=3, stored="fixed", check=count_of_trials, metavar="K"),
    Option("artifacts", str, "Artifact store for those weights (default: a folder next to a "
           "SQLite store).", stored="fixed", normalize=normalize_location,
           metavar="PATH|s3://BUCKET[/PREFIX]"),
    Option("trial_timeout", float, "A trial running longer is stopped and failed with its reason "
           "(default: no limit).", stored="changeable", check=positive_seconds, metavar="SECONDS"),
    # The objective, as Keras Tuner's `objective=`: a metric name (its direction inferred as
    # Keras Tuner infers it, or given), else the space's OBJECTIVE, else val_accuracy (or
    # default_objective, minimised, when fit() returns a number).
    Option("objective", str, "The metric to optimize (default: the space's OBJECTIVE, else "
           "val_accuracy).", default="val_accuracy", stored="fixed", metavar="NAME"),
    Option("direction", str, "min or max for --objective (default: inferred as Keras Tuner does).",
           default="max", stored="fixed", choices=DIRECTIONS, check=one_of(DIRECTIONS, "direction"),
           labelled=False),
    Option("max_consecutive_failures", int, "Stop the study after this many failed trials in a row "
           "(Keras Tuner's max_consecutive_failed_trials; default 3, 0: never).",
           default=DEFAULT_MAX_CONSECUTIVE_FAILURES, stored="changeable", check=count_of_trials,
           metavar="N"),
)
OPTIONS = {o.name: o for o in START_OPTIONS}
WORKER_OPTIONS = ("storage", "gpus", "per_gpu")  # the start options `search worker` shares


@dataclass
class StartOptions:
    """What ``search start`` was asked: the space file, ``fixed`` (``--set`` values, raw),
    ``sweep`` (``--sweep`` values, raw lists) and the options given in ``values`` (a name that is
    absent was not given)."""

    space_file: str
    fixed: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        if name in OPTIONS:
            return self.values.get(name)
        raise AttributeError(name)

    def given(self, kind: str) -> dict:
        """The given options stored as ``kind`` ("fixed" or "changeable")."""
        return {k: v for k, v in self.values.items() if OPTIONS[k].stored == kind}


def check(name: str, value):
    """One option's value, checked and normalised."""
    return OPTIONS[name].checked(value)


def start_options(space_file: str, fixed: dict | None = None, sweep: dict | None = None,
                  **values) -> StartOptions:
    """Check the keywords of ``search.start`` against :data:`START_OPTIONS`."""
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise SearchError(f"unknown option {unknown[0]!r}: the options are {', '.join(OPTIONS)}")
    given = {k: OPTIONS[k].checked(v) for k, v in values.items() if v is not None}
    heartbeat, grace = given.get("heartbeat"), given.get("grace")
    if heartbeat is not None and grace is not None:
        check_grace(heartbeat, grace)
    fixed = dict(fixed or {})
    return StartOptions(space_file, fixed, given, check_sweep(sweep or {}, fixed))


def sweep_flag(name: str, values) -> str:
    """``--sweep NAME=V1,V2`` as the user writes it."""
    return f"--sweep {name}={','.join(str(v) for v in values)}"


def check_sweep(sweep: dict, fixed: dict) -> dict:
    """``--sweep NAME=V1,V2,...`` values (raw): at least two different values a name, and no name
    also fixed with ``--set``; their types are the space's, checked when it is loaded."""
    checked = {}
    for name, values in sweep.items():
        if not isinstance(values, (list, tuple)):
            raise SearchError(f"--sweep {name}={values}: expected a list of values, e.g. classes=3,6,10")
        shown = sweep_flag(name, values)
        if name in fixed:
            raise SearchError(f"{shown} and --set {name}={fixed[name]}: a hyperparameter is either "
                              "fixed or swept, not both")
        if len({str(v) for v in values}) != len(values) or len(values) < 2:
            raise SearchError(f"{shown}: give two or more different values (one value: --set "
                              f"{name}=VALUE fixes it)")
        checked[name] = list(values)
    return checked


def check_grace(heartbeat: int, grace: int) -> None:
    """The grace period must outlast a heartbeat (several, better: see ``heartbeat``)."""
    if grace <= heartbeat:
        raise OptionError(OPTIONS["grace"], f"must be longer than the heartbeat interval "
                                            f"({heartbeat} s), got {grace}")


@dataclass
class StudyConfig:
    """A study's configuration, stored with the study so a worker needs only the store URL and
    the study name. Stored options keep their option's name and default."""

    space_path: str
    data: str
    objective: str = "val_accuracy"  # the metric optimized (Keras Tuner's Objective name)
    direction: str = "max"  # "min" or "max"
    epochs: int = OPTIONS["epochs"].default
    sampler: str = OPTIONS["sampler"].default
    seed: int = OPTIONS["seed"].default
    pruner: str = OPTIONS["pruner"].default
    heartbeat: int = OPTIONS["heartbeat"].default
    grace: int = OPTIONS["grace"].default
    keep_best: int = OPTIONS["keep_best"].default  # checkpoints kept: the top K trials' weights
    artifacts: str | None = None  # artifact store: a folder or s3://bucket[/prefix]; None: next to the store
    trial_timeout: float | None = None  # a trial running longer is stopped and failed (None: no limit)
    max_retry: int = OPTIONS["max_retry"].default  # a retry that dies too counts again
    # failed trials in a row that stop the study (0: never)
    max_consecutive_failures: int = OPTIONS["max_consecutive_failures"].default
    # what the space's fit() returns (found at start: "history", "number", "dict"; None: unknown)
    fit_returns: str | None = None
    fit_kwargs: dict = field(default_factory=dict)  # search.Tuner.search()'s other fit() arguments
    # what the stored source is: "space" (a space module), "script" (the script that ran a
    # search.Tuner: its hypermodel is the tuner's) or "notebook" (no source: only the tuner's
    # own process can run the trials)
    source_kind: str = "space"
    fixed: dict = field(default_factory=dict)  # --set NAME=VALUE, already coerced to the space's types
    # --sweep NAME=V1,V2,...: conditions swept beside the space's CONDITIONS (search.space.conditions)
    sweep: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)  # keras_tuner.HyperParameters.get_config() of the discovered space

    # Keys of stores written before the option names were the stored names.
    LEGACY_KEYS: ClassVar[dict] = {"heartbeat_s": "heartbeat", "grace_s": "grace", "trial_timeout_s": "trial_timeout"}

    @property
    def optuna_direction(self) -> str:
        """The direction as Optuna names it (``maximize``/``minimize``)."""
        return "maximize" if self.direction == "max" else "minimize"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> StudyConfig:
        known = {f.name for f in fields(cls)}
        renamed = {cls.LEGACY_KEYS.get(k, k): v for k, v in raw.items()}
        return cls(**{k: v for k, v in renamed.items() if k in known})
