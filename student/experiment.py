"""``ngteach experiment SPEC``: corpus x teacher x loss x seed, run, resumed and tabulated.

A spec is a small TOML file (the ones behind the README's results are in ``experiments/``)::

    name = "wt2-mini"
    seeds = [0, 1, 2]
    baseline = "ce"                 # the configuration every other one is compared with

    [corpora.wt2-mini]              # paths are relative to the spec; NAME:SPLIT names work too
    train = "../../shared/corpora/wikitext-2/valid.txt"
    valid_fraction = 0.1            # the last lines of train become the validation text
    test = "../../shared/corpora/wikitext-2/test.txt"   # or test_fraction (taken before valid)

    [teachers.count4]               # kind: count or kneser-ney
    kind = "count"
    order = 4
    k = 20

    [student]                       # `ngteach distill` options shared by every run
    size = "small"

    [losses.ce]                     # one configuration per loss without a teacher (ce, ls) ...
    loss = "ce"
    [losses.rank]                   # ... and per teacher for rank and kl: "rank@count4"
    loss = "rank"
    weight = 0.01
    teachers = ["count4"]           # default: every teacher (kl: those with log-probabilities)

Everything goes under the output folder (see FORMATS.md): the corpus splits, one model
directory and ranks file per teacher (built once, shared by every run that uses it), one
``ngteach distill`` run directory per configuration and seed, and the results. A run that
finished is skipped, an interrupted one resumed, so rerunning a spec picks up where it
stopped and rerunning a finished one changes nothing.
"""
from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from corpora import NgteachError, check_corpus
from ngram_teacher.files import read_json_object, write_atomic, write_json

TEACHER_KINDS = ("count", "kneser-ney")
LOSSES_WITH_TEACHER = ("rank", "kl")
# Options the experiment sets itself for every run.
RUN_OWNED = ("model", "ranks", "valid", "test", "out", "seed", "resume")
PLAN = "plan.json"


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    train: str
    valid: str | None = None
    test: str | None = None
    valid_fraction: float | None = None
    test_fraction: float | None = None


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    kind: str
    order: int = 4
    k: int = 20
    discount_fallback: bool = False  # kneser-ney: lmplz's fallback discounts where needed

    @property
    def has_logprobs(self) -> bool:
        return self.kind == "kneser-ney"


@dataclass(frozen=True)
class Config:
    """One column of the grid: a loss (with its distill options) and its teacher, if any."""

    name: str
    loss: str
    teacher: str | None
    options: dict


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


@dataclass(frozen=True)
class Run:
    corpus: str
    config: Config
    seed: int
    directory: Path
    args: tuple[str, ...] = field(compare=False)

    @property
    def name(self) -> str:
        return f"{self.corpus}/{self.directory.name}"


# ---- the spec ---------------------------------------------------------------------------------

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

    _only(raw, {"name", "seeds", "baseline", "corpora", "teachers", "student", "losses"}, "the top level", bad)
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise bad("seeds must be a list of non-negative integers")
    corpora = [_corpus(name, table, bad) for name, table in _tables(raw, "corpora", bad).items()]
    if not corpora:
        raise bad("no [corpora.NAME] table")
    teachers = {name: _teacher(name, table, bad) for name, table in raw.get("teachers", {}).items()}
    student = raw.get("student", {})
    _check_distill_options(student, "[student]", bad)
    configs = [c for name, table in _tables(raw, "losses", bad).items() for c in _configs(name, table, teachers, bad)]
    if not configs:
        raise bad("no [losses.NAME] table")
    baseline = raw.get("baseline", configs[0].name)
    if baseline not in {c.name for c in configs}:
        raise bad(f"baseline {baseline!r} is none of the configurations {', '.join(c.name for c in configs)}")
    return Spec(str(raw.get("name", "experiment")), folder, seeds, baseline, corpora, teachers, student, configs)


def _tables(raw: dict, key: str, bad) -> dict:
    tables = raw.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise bad(f"{key} must hold tables ([{key}.NAME])")
    return tables


def _only(table: dict, allowed: set[str], what: str, bad) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r} in {what} (allowed: {', '.join(sorted(allowed))})")


def _corpus(name: str, table: dict, bad) -> CorpusSpec:
    _only(table, {"train", "valid", "test", "valid_fraction", "test_fraction"}, f"[corpora.{name}]", bad)
    if "train" not in table:
        raise bad(f"[corpora.{name}] needs train")
    for split in ("valid", "test"):
        fraction = table.get(f"{split}_fraction")
        if (split in table) == (fraction is not None):
            raise bad(f"[corpora.{name}] needs exactly one of {split} and {split}_fraction")
        if fraction is not None and not (isinstance(fraction, (int, float)) and 0 < fraction < 0.5):
            raise bad(f"[corpora.{name}] {split}_fraction must be between 0 and 0.5, not {fraction!r}")
    return CorpusSpec(name, **table)


def _teacher(name: str, table: dict, bad) -> TeacherSpec:
    _only(table, {"kind", "order", "k", "discount_fallback"}, f"[teachers.{name}]", bad)
    if table.get("kind") not in TEACHER_KINDS:
        raise bad(f"[teachers.{name}] kind must be one of {', '.join(TEACHER_KINDS)}, not {table.get('kind')!r}")
    teacher = TeacherSpec(name, **table)
    if not (isinstance(teacher.order, int) and 1 <= teacher.order <= 16 and isinstance(teacher.k, int) and teacher.k >= 1):
        raise bad(f"[teachers.{name}] order must be 1..16 and k at least 1")
    return teacher


def _configs(name: str, table: dict, teachers: dict[str, TeacherSpec], bad) -> list[Config]:
    options = {key: value for key, value in table.items() if key != "teachers"}
    _check_distill_options(options, f"[losses.{name}]", bad)
    loss = options.get("loss", "ce")
    if loss not in LOSSES_WITH_TEACHER:
        if "teachers" in table:
            raise bad(f"[losses.{name}] loss {loss!r} uses no teacher")
        return [Config(name, loss, None, options)]
    usable = [t for t in teachers.values() if loss != "kl" or t.has_logprobs]
    chosen = table.get("teachers", [t.name for t in usable])
    for teacher in chosen:
        if teacher not in teachers:
            raise bad(f"[losses.{name}] names teacher {teacher!r}, which no [teachers.{teacher}] defines")
        if loss == "kl" and not teachers[teacher].has_logprobs:
            raise bad(f"[losses.{name}] kl needs a teacher with log-probabilities; {teacher!r} "
                      f"({teachers[teacher].kind}) has none")
    if not chosen:
        raise bad(f"[losses.{name}] has no teacher to learn from")
    return [Config(f"{name}@{teacher}", loss, teacher, options) for teacher in chosen]


def _check_distill_options(options: dict, what: str, bad) -> None:
    from .cli import distill

    known = set(inspect.signature(distill).parameters) - set(RUN_OWNED)
    _only(options, known, what, bad)


# ---- the plan ---------------------------------------------------------------------------------

def plan_runs(spec: Spec, out: Path) -> list[Run]:
    """Every run of the grid, with its ``ngteach distill`` arguments."""
    runs = []
    for corpus in spec.corpora:
        data = out / corpus.name / "data"
        for config in spec.configs:
            teacher = spec.teachers.get(config.teacher) if config.teacher else None
            model, ranks = teacher_files(out / corpus.name, teacher)
            for seed in spec.seeds:
                directory = out / corpus.name / "runs" / f"{config.name}-s{seed}"
                options = {**spec.student, **config.options, "model": str(model), "ranks": ranks and str(ranks),
                           "valid": str(data / "valid.txt"), "test": str(data / "test.txt"),
                           "out": str(directory), "seed": seed}
                runs.append(Run(corpus.name, config, seed, directory, tuple(_distill_args(options))))
    return runs


def teacher_files(corpus_dir: Path, teacher: TeacherSpec | None) -> tuple[Path, Path | None]:
    """(model directory, ranks file) of a teacher; the shared base model without one."""
    if teacher is None:
        return corpus_dir / "model", None
    folder = corpus_dir / "teachers" / teacher.name
    model = folder / "model" if teacher.kind == "count" else corpus_dir / "model"
    return model, folder / "ranks.bin"


def _distill_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is not None:
            args += [flag, str(value)]
    return args


def check_plan(runs: list[Run], out: Path) -> None:
    """Refuse to mix runs of a changed spec into an output folder; record the plan."""
    path = out / PLAN
    planned = {run.name: list(run.args) for run in runs}
    if path.exists():
        before = read_json_object(path, f"{path}: missing")
        changed = [run.name for run in runs if before.get(run.name, list(run.args)) != list(run.args)
                   and (run.directory / "config.json").exists()]
        if changed:
            raise NgteachError(f"{out}: the spec changed the options of {changed[0]}, which already ran; "
                               "use another --out or remove that run")
        planned = {**before, **planned}
    write_json(path, planned)


# ---- data and teachers ------------------------------------------------------------------------

def prepare_corpus(spec: Spec, corpus: CorpusSpec, out: Path, data_dir: Path | None = None) -> Path:
    """Write the train, valid and test texts of ``corpus`` under ``out/CORPUS/data``."""
    folder = out / corpus.name / "data"
    if (folder / "train.txt").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    lines = _read_lines(spec, corpus.train, data_dir)
    # Fractions are of the whole file: test is its tail, valid the lines just before it.
    n_test, n_valid = (round(len(lines) * (fraction or 0)) for fraction in (corpus.test_fraction, corpus.valid_fraction))
    end = len(lines) - n_test
    test = lines[end:] if n_test else _read_lines(spec, corpus.test, data_dir)
    valid = lines[end - n_valid:end] if n_valid else _read_lines(spec, corpus.valid, data_dir)
    train = lines[:end - n_valid]
    if not train or not valid or not test:
        raise NgteachError(f"corpus {corpus.name}: a split came out empty ({len(train)} train, "
                           f"{len(valid)} valid, {len(test)} test lines)")
    for split, text in (("test", test), ("valid", valid), ("train", train)):  # train last: it marks done
        write_atomic(folder / f"{split}.txt", "".join(text).encode("utf-8"))
    return folder


def _read_lines(spec: Spec, name: str, data_dir: Path | None) -> list[str]:
    return _read_text(spec, name, data_dir).splitlines(keepends=True)


def _read_text(spec: Spec, name: str, data_dir: Path | None) -> str:
    from corpora.registry import is_registry_name, resolve_corpus

    path = spec.folder / name
    if not path.exists() and is_registry_name(name):
        path = resolve_corpus(name, data_dir=data_dir)
    text = check_corpus(path).read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"


def prepare_teachers(spec: Spec, corpus: CorpusSpec, out: Path, log: Callable[[str], None]) -> None:
    """Build the shared base model and every teacher's ranks file that is not there yet."""
    from ngram_teacher import NgramModel, build_model

    corpus_dir = out / corpus.name
    train = corpus_dir / "data" / "train.txt"
    base, _ = teacher_files(corpus_dir, None)
    if not base.exists():
        build_model(train, base, order=1)
    for teacher in spec.teachers.values():
        model, ranks = teacher_files(corpus_dir, teacher)
        if ranks.exists():
            continue
        log(f"{corpus.name}: making teacher {teacher.name} ({teacher.kind}, order {teacher.order}, k {teacher.k})")
        ranks.parent.mkdir(parents=True, exist_ok=True)
        if teacher.kind == "count":
            if not model.exists():
                build_model(train, model, order=teacher.order)
            _count_ranks(NgramModel(model), teacher, ranks, str(train))
        else:
            _kneser_ney_ranks(NgramModel(model), teacher, ranks, str(train))


def _count_ranks(model, teacher: TeacherSpec, ranks: Path, source: str) -> None:
    from ngram_teacher import write_ranks

    write_ranks(model, model.tokens(), ranks, teacher.k, gt_first=True, with_scores=True, corpus=source)


def _kneser_ney_ranks(model, teacher: TeacherSpec, ranks: Path, source: str) -> None:
    from ngram_teacher.arpa import write_arpa
    from ngram_teacher.arpa_rank import load_teacher, write_arpa_ranks
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney

    arpa = ranks.with_name("model.arpa")
    fallback = LMPLZ_FALLBACK if teacher.discount_fallback else None
    write_arpa(estimate_kneser_ney(model, teacher.order, fallback), arpa)
    write_arpa_ranks(model, load_teacher(arpa, model, teacher.k), model.tokens(), ranks, teacher.k, corpus=source)


# ---- running ----------------------------------------------------------------------------------

def run_state(run: Run) -> str:
    """``done``, ``interrupted`` (resumable) or ``new``."""
    if (run.directory / "summary.json").exists():
        return "done"
    if (run.directory / "checkpoints" / "last.pt").exists():
        return "interrupted"
    return "new"


def execute(runs: list[Run], jobs: int, threads: int, on_done: Callable[[Run, int], None]) -> list[Run]:
    """Run what is not done yet, ``jobs`` at a time with ``threads`` torch threads each;
    return the runs that failed (their log is ``run.log`` in the run directory)."""
    pending = [run for run in runs if run_state(run) != "done"]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(lambda run: _distill(run, threads, on_done), pending))
    return [run for run, code in zip(pending, codes) if code != 0]


def _distill(run: Run, threads: int, on_done: Callable[[Run, int], None]) -> int:
    state = run_state(run)
    if state == "new" and run.directory.exists():  # killed before its first checkpoint
        shutil.rmtree(run.directory)
    args = ["--resume", str(run.directory)] if state == "interrupted" else list(run.args)
    log = run.directory.with_name(run.directory.name + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "a", encoding="utf-8") as f:
        code = subprocess.run([sys.executable, "-m", "ngram_teacher", "distill", *args], stdout=f, stderr=f,
                              stdin=subprocess.DEVNULL, env=env).returncode
    on_done(run, code)
    return code


# ---- the whole experiment ---------------------------------------------------------------------

def run_experiment(spec: Spec, out: Path, jobs: int = 1, threads: int | None = None, data_dir: Path | None = None,
                   log: Callable[[str], None] = print, progress=None) -> dict:
    """Prepare, run what is left, and write the results; returns {"failed": [...], "files": [...]}."""
    from ngram_teacher.provenance import provenance

    if jobs < 1:
        raise NgteachError(f"--jobs must be at least 1, not {jobs}")
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    out.mkdir(parents=True, exist_ok=True)
    runs = plan_runs(spec, out)
    check_plan(runs, out)
    write_json(out / "experiment.json", {"name": spec.name, "seeds": spec.seeds, "baseline": spec.baseline,
                                         "provenance": provenance()})
    for corpus in spec.corpora:
        prepare_corpus(spec, corpus, out, data_dir)
        prepare_teachers(spec, corpus, out, log)
    left = [run for run in runs if run_state(run) != "done"]
    log(f"{spec.name}: {len(runs)} runs, {len(runs) - len(left)} done, {len(left)} to run "
        f"({jobs} at a time, {threads} thread(s) each)")
    advance = progress("runs", len(left)) if progress else (lambda n: None)

    def done(run: Run, code: int) -> None:
        advance(1)
        log(f"{run.name}: {'finished' if code == 0 else f'failed (exit {code}), see its .log'}")

    failed = execute(runs, jobs, threads, done)
    files = write_results(spec, runs, out)
    return {"failed": failed, "files": files}


def write_results(spec: Spec, runs: list[Run], out: Path) -> list[Path]:
    from . import results

    tables = results.summarize(spec, runs)
    results.write_csv(results.finished_rows(runs, out), out / "results.csv")
    write_atomic(out / "results.md", results.markdown(spec, tables).encode("utf-8"))
    return [out / "results.csv", out / "results.md", *results.plot(spec, tables, out / "plots")]


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
epochs = 6
lr = 0.005

[losses.ce]
loss = "ce"

[losses.ls]
loss = "ls"
weight = 0.1

[losses.rank]
loss = "rank"
weight = 0.01

[losses.kl]
loss = "kl"
weight = 0.5
"""


def demo_spec() -> Spec:
    return parse_spec(tomllib.loads(DEMO_SPEC), Path.cwd(), "the demo spec")
