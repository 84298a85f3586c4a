"""Experiment specs: the TOML file behind ``ngteach experiment SPEC``, read and checked.

A spec is a small TOML file (the ones behind the README's results are in ``experiments/``)::

    name = "wt2-mini"               # default "experiment"
    seeds = [0, 1, 2]               # default [0]; no seed twice
    baseline = "ce"                 # compared with every other configuration (default: the first)
    metric = "exclude-oov"          # what differences and p-values compare: "all" test tokens
                                    # (default) or those in the vocabulary (both are reported)
    compare = ["ls", "kl@kn4"]      # more configurations every other is compared with (Δ, p)

    [corpora.wt2-mini]              # paths are relative to the spec; NAME:SPLIT names work too
    train = "../../shared/corpora/wikitext-2/valid.txt"
    valid_fraction = 0.1            # the last lines of train become the validation text
    test = "../../shared/corpora/wikitext-2/test.txt"   # or test_fraction (taken before valid)
    # min_count = 2                 # rarer training words become <unk>, so <unk> is a trained word
    # train_share = 0.5             # students train on the first half of train's lines; the
                                    # vocabulary and the teachers count all of it

    [teachers.count4]               # kind: count, cloze (two-sided), infini (unbounded order: k
                                    # only) or kneser-ney (order, k) ...
    kind = "count"
    order = 4
    k = 20
    # discount_fallback = true      # kneser-ney only: as `ngteach arpa --discount-fallback`
    # leave_one_out = true          # kneser-ney only: each training position ranked without its
                                    # own n-grams (the kn-loo teacher; no self-echo)

    [teachers.ba]                   # ... or born-again: the student of a run of this grid
    kind = "born-again"
    run = "ce"                      # a configuration without a teacher ...
    seed = 0                        # ... and which seed's run (default: the first seed)
    k = 20

    [student]                       # `ngteach distill` options shared by every run, with _ for -
    size = "small"                  # (dropout_embedding = 0.5), checked as distill checks them

    [losses.ce]                     # one configuration per loss without a teacher (ce, ls) ...
    loss = "ce"
    [losses.rank]                   # ... and per teacher for rank and kl: "rank@count4"
    loss = "rank"
    weight = 0.01
    teachers = ["count4"]           # default: every teacher (kl: those with log-probabilities)

Names of the experiment, corpora, teachers and losses are made of letters, digits, ``.``,
``_`` and ``-`` and do not start with ``.`` (they name folders and files).
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from corpora import NgteachError
from ngram_teacher.infini import MAX_LEVEL_ORDER

# The keys of a [teachers.NAME] table besides kind, per kind.
TEACHER_KEYS = {"count": {"order", "k"}, "cloze": {"order", "k"}, "infini": {"k"},
                "kneser-ney": {"order", "k", "discount_fallback", "leave_one_out"}, "born-again": {"run", "seed", "k"}}
LOSSES_WITH_TEACHER = ("rank", "pl", "kl")
METRICS = ("all", "exclude-oov")  # every test token, or those in the vocabulary
# Options the experiment sets itself for every run.
RUN_OWNED = ("model", "ranks", "teacher", "train", "valid", "test", "out", "seed")
# Names of the experiment, corpora, teachers and losses (folder and file names; @ joins a loss and its teacher).
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    train: str
    valid: str | None = None
    test: str | None = None
    valid_fraction: float | None = None
    test_fraction: float | None = None
    min_count: int | None = None  # words seen fewer times in train become <unk> (None: 1)
    train_share: float | None = None  # the students read the first lines of train, this share; teachers all


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    kind: str
    order: int = 4
    k: int = 20
    discount_fallback: bool = False  # kneser-ney: lmplz's fallback discounts where needed
    leave_one_out: bool = False  # kneser-ney: each position ranked without its own n-grams
    run: str | None = None  # born-again: the configuration (without a teacher) ...
    seed: int | None = None  # ... and the seed of the run whose student teaches

    @property
    def has_logprobs(self) -> bool:
        return self.kind in ("kneser-ney", "born-again")


@dataclass(frozen=True)
class Config:
    """One column of the grid: a loss (with its distill options) and its teacher, if any."""

    table: str  # the spec's [losses.NAME] it comes from
    loss: str
    teacher: str | None
    options: dict

    @property
    def name(self) -> str:
        """NAME, or NAME@teacher for a loss with teachers."""
        return f"{self.table}@{self.teacher}" if self.teacher else self.table


@dataclass
class Spec:
    name: str
    folder: Path  # relative paths are read from here
    seeds: list[int]
    baseline: str
    corpora: list[CorpusSpec]
    teachers: dict[str, TeacherSpec]
    student: dict
    configs: list[Config]
    metric: str = "all"  # or "exclude-oov": what the results' differences and p-values compare
    compare: list[str] = field(default_factory=list)  # configurations compared with every other, beside baseline


def load_spec(path: str | os.PathLike) -> Spec:
    path = Path(path)
    if not path.is_file():
        raise NgteachError(f"{path}: no such experiment spec")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise NgteachError(f"{path}: not a TOML experiment spec ({e})") from None
    return parse_spec(raw, path.parent, str(path))


def parse_spec(raw: dict, folder: Path, where: str = "spec") -> Spec:
    """A checked :class:`Spec` from the parsed TOML of an experiment."""
    def bad(message: str) -> NgteachError:
        return NgteachError(f"{where}: {message}")

    _only(raw, {"name", "seeds", "baseline", "metric", "compare", "corpora", "teachers", "student", "losses"},
          "the top level", bad)
    name = raw.get("name", "experiment")
    _check_name(name, "the experiment", bad)
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(type(s) is int and s >= 0 for s in seeds)):
        raise bad("seeds must be a list of non-negative integers")
    if len(set(seeds)) < len(seeds):
        raise bad(f"seeds {seeds} repeat a seed")
    corpora = [_corpus(name, table, bad) for name, table in _tables(raw, "corpora", bad).items()]
    if not corpora:
        raise bad("no [corpora.NAME] table")
    teachers = {name: _teacher(name, table, seeds, bad) for name, table in _tables(raw, "teachers", bad).items()}
    shared = next((c.name for c in corpora if c.train_share), None)
    loo = next((t.name for t in teachers.values() if t.leave_one_out), None)
    if shared and loo:
        raise bad(f"[teachers.{loo}] leave_one_out ranks the text it counted, and the students of corpus {shared!r} "
                  "read only a share of it (train_share)")
    student = raw.get("student", {})
    if not isinstance(student, dict):
        raise bad("student must be a table ([student])")
    _check_distill_options(student, "[student]", bad)
    configs = [c for name, table in _tables(raw, "losses", bad).items()
               for c in _configs(name, table, teachers, student, bad)]
    if not configs:
        raise bad("no [losses.NAME] table")
    _check_born_again_runs(teachers, configs, bad)
    baseline = raw.get("baseline", configs[0].name)
    if baseline not in {c.name for c in configs}:
        raise bad(f"baseline {baseline!r} is none of the configurations {', '.join(c.name for c in configs)}")
    metric = raw.get("metric", "all")
    if metric not in METRICS:
        raise bad(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    compare = raw.get("compare", [])
    names = [c.name for c in configs]
    if not (isinstance(compare, list) and all(name in names for name in compare)):
        raise bad(f"compare must be a list of the configurations ({', '.join(names)}), not {compare!r}")
    if len(set(compare)) < len(compare) or baseline in compare:
        raise bad(f"compare names a configuration twice or the baseline ({compare!r}; the baseline is {baseline!r})")
    return Spec(name, folder, seeds, baseline, corpora, teachers, student, configs, metric, compare)


def _tables(raw: dict, key: str, bad) -> dict:
    tables = raw.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise bad(f"{key} must hold tables ([{key}.NAME])")
    for name in tables:
        _check_name(name, {"corpora": "corpus", "teachers": "teacher", "losses": "loss"}[key], bad)
    return tables


def _check_name(name, what: str, bad) -> None:
    if not (isinstance(name, str) and NAME.fullmatch(name)):
        raise bad(f"{what} name {name!r} may hold only letters, digits, '.', '_' and '-', and not start with '.'")


def _only(table: dict, allowed: set[str], what: str, bad) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r} in {what} (allowed: {', '.join(sorted(allowed))})")


def _corpus(name: str, table: dict, bad) -> CorpusSpec:
    _only(table, {"train", "valid", "test", "valid_fraction", "test_fraction", "min_count", "train_share"},
          f"[corpora.{name}]", bad)
    if "train" not in table:
        raise bad(f"[corpora.{name}] needs train")
    for split in ("train", "valid", "test"):
        if split in table and not (isinstance(table[split], str) and table[split]):
            raise bad(f"[corpora.{name}] {split} must be a file name or a named split, not {table[split]!r}")
    for split in ("valid", "test"):
        fraction = table.get(f"{split}_fraction")
        if (split in table) == (fraction is not None):
            raise bad(f"[corpora.{name}] needs exactly one of {split} and {split}_fraction")
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction < 0.5):
            raise bad(f"[corpora.{name}] {split}_fraction must be between 0 and 0.5, not {fraction!r}")
    if "min_count" in table and not (type(table["min_count"]) is int and table["min_count"] >= 1):
        raise bad(f"[corpora.{name}] min_count must be an integer of at least 1, not {table['min_count']!r}")
    share = table.get("train_share")
    if share is not None and not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share < 1):
        raise bad(f"[corpora.{name}] train_share must be between 0 and 1, not {share!r}")
    return CorpusSpec(name, **table)


def _teacher(name: str, table: dict, seeds: list[int], bad) -> TeacherSpec:
    where = f"[teachers.{name}]"
    kind = table.get("kind")
    if kind not in TEACHER_KEYS:
        raise bad(f"{where} kind must be one of {', '.join(TEACHER_KEYS)}, not {kind!r}")
    _only(table, {"kind", *TEACHER_KEYS[kind]}, f"{where} of kind {kind}", bad)
    defaults = {"seed": seeds[0]} if kind == "born-again" else {}
    teacher = TeacherSpec(name, **{**defaults, **table})
    if not (isinstance(teacher.order, int) and 1 <= teacher.order <= 16 and isinstance(teacher.k, int) and teacher.k >= 1):
        raise bad(f"{where} order must be 1..16 and k at least 1")
    for flag in ("discount_fallback", "leave_one_out"):
        if not isinstance(getattr(teacher, flag), bool):
            raise bad(f"{where} {flag} must be true or false, not {getattr(teacher, flag)!r}")
    if kind == "born-again" and not isinstance(teacher.run, str):
        raise bad(f"{where} needs run, the configuration (without a teacher) whose student teaches")
    if kind == "born-again" and not (isinstance(teacher.seed, int) and teacher.seed in seeds):
        raise bad(f"{where} seed must be one of the seeds {seeds}, not {teacher.seed!r}")
    return teacher


def _check_born_again_runs(teachers: dict[str, TeacherSpec], configs: list[Config], bad) -> None:
    """A born-again teacher learns from a configuration of the spec without a teacher (so
    no run ever waits for itself)."""
    plain = [config.name for config in configs if config.teacher is None]
    for teacher in teachers.values():
        if teacher.kind == "born-again" and teacher.run not in plain:
            raise bad(f"[teachers.{teacher.name}] run {teacher.run!r} is none of the configurations without "
                      f"a teacher ({', '.join(plain) or 'there are none'})")


def _configs(name: str, table: dict, teachers: dict[str, TeacherSpec], student: dict, bad) -> list[Config]:
    options = {key: value for key, value in table.items() if key != "teachers"}
    _check_distill_options(options, f"[losses.{name}]", bad)
    config = _check_run_options({**student, **options}, f"[losses.{name}] (with [student])", bad)
    loss = config.loss
    if loss not in LOSSES_WITH_TEACHER:
        if "teachers" in table:
            raise bad(f"[losses.{name}] loss {loss!r} uses no teacher")
        return [Config(name, loss, None, options)]
    from .losses import TEACHER_SMOOTHING

    teacher_smoothing = config.smoothing == TEACHER_SMOOTHING

    def fits(t: TeacherSpec) -> bool:  # a count teacher's entries get its Kneser-Ney model's probabilities
        return (loss != "kl" or t.has_logprobs) and (not teacher_smoothing or t.has_logprobs or t.kind == "count")

    usable = [t for t in teachers.values() if fits(t)]
    chosen = table.get("teachers", [t.name for t in usable])
    if not (isinstance(chosen, list) and all(isinstance(t, str) for t in chosen) and len(set(chosen)) == len(chosen)):
        raise bad(f"[losses.{name}] teachers must be a list of teacher names without repeats, not {chosen!r}")
    for teacher in chosen:
        if teacher not in teachers:
            raise bad(f"[losses.{name}] names teacher {teacher!r}, which no [teachers.{teacher}] defines")
        if not fits(teachers[teacher]):
            what = "kl" if loss == "kl" else 'smoothing = "teacher"'
            raise bad(f"[losses.{name}] {what} needs a teacher with log-probabilities; {teacher!r} "
                      f"({teachers[teacher].kind}) has none")
        if config.kl_tail == "full" and teachers[teacher].leave_one_out:
            raise bad(f"[losses.{name}] kl_tail = \"full\" reads the ARPA file of the whole corpus, not the "
                      f"leave-one-out ranks of {teacher!r}")
        if config.kl_tail == "full" and teachers[teacher].kind != "kneser-ney":
            raise bad(f"[losses.{name}] kl_tail = \"full\" needs a kneser-ney teacher (its ARPA file ranks each "
                      f"batch); {teacher!r} is {teachers[teacher].kind}")
        if config.k is not None and config.k > teachers[teacher].k:
            raise bad(f"[losses.{name}] k = {config.k} is more than the k = {teachers[teacher].k} "
                      f"of teacher {teacher!r}")
        order = {"born-again": 1, "infini": MAX_LEVEL_ORDER}.get(teachers[teacher].kind, teachers[teacher].order)  # neural: none
        if config.min_order > order:
            raise bad(f"[losses.{name}] min_order = {config.min_order} is above the order {order} of teacher "
                      f"{teacher!r}")
    if not chosen:
        raise bad(f"[losses.{name}] has no teacher to learn from")
    return [Config(name, loss, teacher, options) for teacher in chosen]


def _check_distill_options(options: dict, what: str, bad) -> None:
    from .train import option_names

    _only(options, option_names() - set(RUN_OWNED), what, bad)


def _check_run_options(options: dict, what: str, bad):
    """The run configuration ``ngteach distill`` makes of ``options``, refused as distill
    would refuse it (before it reads any file)."""
    from .train import config_from_options, flag_options

    flags = flag_options()
    for key, value in options.items():
        if key in flags and not isinstance(value, bool):
            raise bad(f"{what}: {key} must be true or false, not {value!r}")
        if key not in flags and isinstance(value, bool):
            raise bad(f"{what}: {key} takes a value, not true or false")
    try:
        return config_from_options(options)
    except NgteachError as e:
        raise bad(f"{what}: {e}") from None


def distill_args(options: dict) -> list[str]:
    """The ``ngteach distill`` command line of spec options (``dropout_embedding = 0.5``:
    ``--dropout-embedding 0.5``; a false flag: ``--no-FLAG``; None: left out)."""
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is not None:
            args += [flag, str(value)]
    return args


DEMO_SPEC = """
# The demo: a small version of the paper's comparison on Python's own documentation.
name = "demo"
seeds = [0, 1]
baseline = "ce"

[corpora.python-docs]
train = "python-docs:train"
valid = "python-docs:valid"
test = "python-docs:test"

[teachers.count4]
kind = "count"
order = 4
k = 20

[teachers.kn4]
kind = "kneser-ney"
order = 4
k = 20
discount_fallback = true

[student]
student = "lstm"
size = "tiny"
epochs = 3
lr = 0.005

[losses.ce]
loss = "ce"

[losses.ls]
loss = "ls"
weight = 0.1

[losses.rank]
loss = "rank"
weight = 0.01
smoothing = 0  # the paper's rank term, without label smoothing

[losses.kl]
loss = "kl"
weight = 0.5
"""


def demo_spec() -> Spec:
    return parse_spec(tomllib.loads(DEMO_SPEC), Path.cwd(), "the demo spec")
