"""``ngteach experiment SPEC``: corpus x teacher x loss x seed, run, resumed and tabulated
(the spec and its format: :mod:`student.spec`).

Everything goes under the output folder (see FORMATS.md): the corpus splits, one model
directory and ranks file per teacher (built once, shared by every run that uses it), one
``ngteach distill`` run directory per configuration and seed, and the results. A run that
finished is skipped, an interrupted one resumed, so rerunning a spec picks up where it
stopped and rerunning a finished one changes nothing. A spec that changes what is already
there is refused: a corpus's entry or the text of its files, a teacher's table, the
options of a run that started (each corpus and teacher records what it was made from).

The N-gram teachers are made before any run. A born-again teacher's ranks (as ``ngteach
rank --teacher born-again:RUN --scores`` writes them) are made as soon as its run (of the
same corpus) has finished; the runs that learn from it wait for them, the others start
at once. If its run fails, they are not run (their log says why).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable

from corpora import NgteachError, WordTokenizer, check_corpus, read_blocks
from corpora.files import read_json_object, replace_dir, temp_dir, write_atomic, write_json

from .spec import TEACHER_KEYS, Config, CorpusSpec, Spec, TeacherSpec, distill_args

PLAN = "plan.json"
COUNTED = ("count", "cloze")  # teachers of a model directory of their own order
SOURCE = "source.json"  # in CORPUS/data: what the splits were made from
TEACHER = "teacher.json"  # in CORPUS/teachers/NAME: what the teacher was made with
ARPA = "model.arpa"  # in CORPUS/teachers/NAME of a kneser-ney teacher: its model
# config.json settings a run fills in when it starts, if not given: the vocabulary's checksum,
# the partitions its teacher declares
FILLED_BY_RUN = ("vocab_sha256", "partition")
# config.json settings made from --out and the spec's corpora: a change means a moved folder
PATH_KEYS = ("model_dir", "ranks", "teacher", "train", "valid", "test", "out")


@dataclass(frozen=True)
class Run:
    corpus: str
    config: Config
    seed: int
    directory: Path
    options: dict = field(compare=False)  # its ``ngteach distill`` options (student.train.config_from_options)

    @property
    def args(self) -> list[str]:
        """Its ``ngteach distill`` command line."""
        return distill_args(self.options)

    @property
    def name(self) -> str:
        return f"{self.corpus}/{self.directory.name}"

    @property
    def log(self) -> Path:
        return self.directory.with_name(self.directory.name + ".log")


# ---- the plan ---------------------------------------------------------------------------------

def plan_runs(spec: Spec, out: Path) -> list[Run]:
    """Every run of the grid, with its ``ngteach distill`` arguments."""
    runs = []
    for corpus in spec.corpora:
        data = out / corpus.name / "data"
        for config in spec.configs:
            teacher = spec.teachers.get(config.teacher) if config.teacher else None
            model, ranks = teacher_files(out / corpus.name, teacher)
            # the teacher's whole distribution is made batch by batch, from its ARPA file
            settings = {**spec.student, **config.options}  # a loss's own, over the student section's
            online = {"teacher": f"arpa:{ranks.with_name(ARPA)}", "ranks": None} if settings.get(
                "kl_tail") == "full" else {}
            for seed in spec.seeds:
                directory = out / corpus.name / "runs" / f"{config.name}-s{seed}"
                options = {**settings, "model": str(model), "ranks": ranks and str(ranks),
                           **({"train": str(data / "student.txt")} if corpus.train_share else {}),
                           "valid": str(data / "valid.txt"), "test": str(data / "test.txt"),
                           "out": str(directory), "seed": seed, **online}
                runs.append(Run(corpus.name, config, seed, directory, options))
    return runs


def source_run(runs: list[Run], corpus: str, teacher: TeacherSpec) -> Run:
    """The run whose student the born-again ``teacher`` of ``corpus`` is."""
    return next(run for run in runs
                if (run.corpus, run.config.name, run.seed) == (corpus, teacher.run, teacher.seed))


def teacher_files(corpus_dir: Path, teacher: TeacherSpec | None) -> tuple[Path, Path | None]:
    """(model directory, ranks file) of a teacher; the shared base model without one."""
    if teacher is None:
        return corpus_dir / "model", None
    folder = corpus_dir / "teachers" / teacher.name
    model = folder / "model" if teacher.kind in COUNTED else corpus_dir / "model"
    return model, folder / "ranks.bin"


def check_plan(runs: list[Run], out: Path) -> None:
    """Refuse to mix runs of a changed spec into an output folder; record the plan (each
    run's distill options).

    A run that started must have, setting by setting, what the spec gives it now: the
    spec's options are resolved as distill resolves them and compared with the run's
    config.json, so a setting written out at the value it had is no change, and a default
    that changed since the run started is one."""
    for run in runs:
        if (run.directory / "config.json").exists():
            _check_started(run, out)
    path = out / PLAN
    planned = {run.name: run.options for run in runs}
    if path.exists():
        planned = {**read_json_object(path, f"{path}: missing"), **planned}
    write_json(path, planned)


def _check_started(run: Run, out: Path) -> None:
    from .train import RunConfig, config_from_options

    started = asdict(RunConfig.load(run.directory / "config.json"))
    now = asdict(config_from_options(run.options))
    key = next((key for key in now if started.get(key) != now[key]
                and not (key in FILLED_BY_RUN and now[key] is None)), None)
    if key in PATH_KEYS:  # made from --out and the spec's corpora, not set in the spec
        raise NgteachError(f"{out}: {run.name} already ran with {key} {started.get(key)!r}, and the spec now "
                           f"gives {now[key]!r} (was the folder or a corpus moved?); run it where it ran, or "
                           "remove that run")
    if key is not None:
        raise NgteachError(f"{out}: the spec changed {key} of {run.name}, which already ran ({started.get(key)!r} "
                           f"then, {now[key]!r} now); use another --out, remove that run, or set {key} in the "
                           "spec as it was")


# ---- data and teachers ------------------------------------------------------------------------

def corpus_splits(spec: Spec, corpus: CorpusSpec, data_dir: Path | None = None) -> dict[str, str]:
    """The test, valid and train texts of ``corpus`` (refused if one would be empty), and
    with ``train_share`` the student's: the first lines of train, that share of them."""
    lines = _read_lines(spec, corpus.train, data_dir)
    # Fractions are of the whole file: test is its tail, valid the lines just before it.
    n_test, n_valid = (round(len(lines) * (fraction or 0)) for fraction in (corpus.test_fraction, corpus.valid_fraction))
    end = len(lines) - n_test
    test = lines[end:] if corpus.test_fraction else _read_lines(spec, corpus.test, data_dir)
    valid = lines[end - n_valid:end] if corpus.valid_fraction else _read_lines(spec, corpus.valid, data_dir)
    train = lines[:end - n_valid]
    if not train or not valid or not test:
        raise NgteachError(f"corpus {corpus.name}: a split would be empty ({len(train)} train, {len(valid)} valid, "
                           f"{len(test)} test lines; the fractions are of the {len(lines)} line(s) of {corpus.train})")
    splits = {"test": "".join(test), "valid": "".join(valid), "train": "".join(train)}
    if corpus.train_share:
        splits["student"] = "".join(train[:max(1, round(len(train) * corpus.train_share))])
    return splits


def write_corpus(folder: Path, splits: dict[str, str], record: dict) -> None:
    """Write the splits of a corpus and their record (:func:`corpus_record`) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SOURCE, record)
    for split in sorted(splits, key=lambda split: split == "train"):  # train last: it marks done
        write_atomic(folder / f"{split}.txt", splits[split].encode("utf-8"))


def corpus_record(spec: Spec, corpus: CorpusSpec, data_dir: Path | None = None) -> dict:
    """What the splits of ``corpus`` are made from: its entry in the spec and the sha256
    of each file it names (None for one gone since: the splits made from it stand)."""
    entry = {key: value for key, value in asdict(corpus).items() if key != "name" and value is not None}
    return {**entry, **{f"{split}_sha256": _source_sha256(spec, entry[split], data_dir)
                        for split in ("train", "valid", "test") if split in entry}}


def _source_sha256(spec: Spec, name: str, data_dir: Path | None) -> str | None:
    from ngram_teacher.model import file_sha256

    try:
        return file_sha256(_source(spec, name, data_dir))
    except NgteachError:  # moved, or a named split that cannot be fetched now
        return None


TEACHER_DEFAULTS = {f.name: f.default for f in fields(TeacherSpec)}


def teacher_record(teacher: TeacherSpec) -> dict:
    """What a teacher is made with: its table in the spec, defaults filled in."""
    return {key: value for key, value in asdict(teacher).items() if key in {"kind", *TEACHER_KEYS[teacher.kind]}}


def check_made(spec: Spec, out: Path, data_dir: Path | None = None) -> None:
    """Refuse a spec that changed a corpus or teacher already made in ``out`` (their records
    say what they were made from); record those made before records were kept (a corpus
    if its splits are the spec's)."""
    unrecorded = []
    for corpus in spec.corpora:
        data = out / corpus.name / "data"
        if (data / "train.txt").exists():
            if not (data / SOURCE).exists() and any(
                    (data / f"{split}.txt").read_bytes() != text.encode("utf-8")
                    for split, text in corpus_splits(spec, corpus, data_dir).items()):
                raise NgteachError(f"{out}: corpus {corpus.name} was not split from its entry in the spec; "
                                   f"use another --out or remove {data.parent}")
            unrecorded += _check_record(data / SOURCE, corpus_record(spec, corpus, data_dir), out,
                                        f"corpus {corpus.name}", f"remove {data.parent}")
        for teacher in spec.teachers.values():
            folder = teacher_files(out / corpus.name, teacher)[1].parent
            if folder.exists():
                unrecorded += _check_record(folder / TEACHER, teacher_record(teacher), out,
                                            f"teacher {teacher.name} of corpus {corpus.name}",
                                            f"remove {folder} and the runs that learn from it", TEACHER_DEFAULTS)
    for path, record in unrecorded:
        write_json(path, record)


def _check_record(path: Path, record: dict, out: Path, what: str, remedy: str,
                  defaults: dict | None = None) -> list[tuple[Path, dict]]:
    """Refuse ``what`` if the record at ``path`` is not ``record`` (a setting the record
    lacks, written before it existed, counts as its default); [(path, record)] if there is none."""
    if not path.exists():
        return [(path, record)]
    before = {**{key: value for key, value in (defaults or {}).items() if key in record},
              **read_json_object(path, f"{path}: missing")}
    key = next((key for key in {**before, **record} if before.get(key) != record.get(key)
                and not (key.endswith("_sha256") and record.get(key) is None)), None)
    if key is None:
        return []
    if key.endswith("_sha256") and before.get(key) and record.get(key):
        split = key.removesuffix("_sha256")
        raise NgteachError(f"{out}: {what} was made from another text of {split} = {record[split]!r} (its sha256 "
                           f"changed); use another --out or {remedy}")

    def setting(value) -> str:
        return f"no {key}" if value is None else f"{key} = {value!r}"
    raise NgteachError(f"{out}: {what} was made with {setting(before.get(key))}, the spec now has "
                       f"{setting(record.get(key))}; use another --out or {remedy}")


def _read_lines(spec: Spec, name: str, data_dir: Path | None) -> list[str]:
    text = "".join(read_blocks(_source(spec, name, data_dir)))  # refuses binary and invalid UTF-8
    return (text if text.endswith("\n") else text + "\n").splitlines(keepends=True)


def _source(spec: Spec, name: str, data_dir: Path | None) -> Path:
    """The file of a corpus entry's ``name``: a path relative to the spec, or a named split."""
    from corpora.registry import is_registry_name, resolve_corpus

    path = spec.folder / name
    if not path.exists() and is_registry_name(name):
        path = resolve_corpus(name, data_dir=data_dir)
    return check_corpus(path)


def prepare_teachers(spec: Spec, corpus: CorpusSpec, out: Path, log: Callable[[str], None]) -> None:
    """Build the shared base model and every N-gram teacher's ranks file that is not there
    yet (born-again teachers come from runs, see :func:`execute`)."""
    from ngram_teacher import NgramModel, build_model

    corpus_dir = out / corpus.name
    train, ranked = corpus_dir / "data" / "train.txt", student_text(corpus_dir, corpus)
    base, _ = teacher_files(corpus_dir, None)
    # Every model of a corpus shares one vocabulary, so every run is tested on the same tokens.
    tokenize = partial(WordTokenizer.train, min_count=corpus.min_count or 1)
    if not base.exists():
        build_model(train, base, order=1, tokenize=tokenize)
    for teacher in spec.teachers.values():
        model, ranks = teacher_files(corpus_dir, teacher)
        if ranks.exists() or teacher.kind == "born-again":
            continue
        settings = f"order {teacher.order}, k {teacher.k}" if "order" in TEACHER_KEYS[teacher.kind] else f"k {teacher.k}"
        log(f"{corpus.name}: making teacher {teacher.name} ({teacher.kind}, {settings})")
        ranks.parent.mkdir(parents=True, exist_ok=True)
        write_json(ranks.parent / TEACHER, teacher_record(teacher))
        if teacher.kind == "kneser-ney":
            _kneser_ney_ranks(NgramModel(model), teacher, ranks, ranked)
        else:  # count and cloze: a model of their order; infini: the base model's corpus
            if not model.exists():
                build_model(train, model, order=teacher.order, tokenize=tokenize)
            _counted_ranks(NgramModel(model), teacher, ranks, ranked)


def student_text(corpus_dir: Path, corpus: CorpusSpec) -> Path:
    """The text the students of ``corpus`` train on (and the teachers rank): the training
    split, or with ``train_share`` its first lines while the teachers count it all."""
    return corpus_dir / "data" / ("student.txt" if corpus.train_share else "train.txt")


def _counted_ranks(model, teacher: TeacherSpec, ranks: Path, text: Path) -> None:
    """The ranks of a teacher of a model directory (count, cloze, infini): its kind is its
    spec's kind."""
    from ngram_teacher import load_teacher, write_ranks

    write_ranks(load_teacher(f"{teacher.kind}:{model.directory}", model, teacher.k),
                model.tokenizer.encode_file(text), ranks, teacher.k, with_scores=True, corpus=str(text))


def _kneser_ney_ranks(model, teacher: TeacherSpec, ranks: Path, text: Path) -> None:
    from ngram_teacher import load_teacher, write_ranks
    from ngram_teacher.arpa import write_arpa
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney

    fallback = LMPLZ_FALLBACK if teacher.discount_fallback else None
    if teacher.leave_one_out:  # the model's own corpus, each position without its n-grams
        from ngram_teacher.leave_one_out import LeaveOneOutTeacher

        ranker = LeaveOneOutTeacher(model, teacher.order, fallback)
    else:
        arpa = ranks.with_name(ARPA)
        write_arpa(estimate_kneser_ney(model, teacher.order, fallback), arpa)
        ranker = load_teacher(f"arpa:{arpa}", model, teacher.k)
    write_ranks(ranker, model.tokenizer.encode_file(text), ranks, teacher.k, with_scores=True, corpus=str(text))


# ---- running ----------------------------------------------------------------------------------

def run_state(run: Run) -> str:
    """``done``, ``interrupted`` (resumable) or ``new``."""
    if (run.directory / "summary.json").exists():
        return "done"
    if (run.directory / "checkpoints" / "last.pt").exists():
        return "interrupted"
    return "new"


def in_run_order(runs: list[Run], seeds: list[int]) -> list[Run]:
    """Interrupted runs first (their work is half done), then seed by seed, and within a
    seed the corpora in turn, so that a grid cut short has every configuration's first
    seeds on every corpus rather than all seeds of a few."""
    seen: dict[tuple[str, int], int] = {}
    turn = []  # each run's place among the runs of its corpus and seed, in plan order
    for run in runs:
        turn.append(seen.get((run.corpus, run.seed), 0))
        seen[run.corpus, run.seed] = turn[-1] + 1
    order = sorted(range(len(runs)), key=lambda i: (run_state(runs[i]) != "interrupted",
                                                   seeds.index(runs[i].seed), turn[i]))
    return [runs[i] for i in order]


@dataclass(eq=False)
class Step:
    """A unit of work for :func:`schedule`: ``work()`` says whether it succeeded."""

    name: str
    work: Callable[[], bool]
    skip: Callable[["Step"], None]  # told the failed step that keeps it from being done
    needs: list["Step"] = field(default_factory=list)  # steps that must succeed first


def schedule(steps: list[Step], jobs: int) -> dict[Step, Step]:
    """Do every step once the steps it needs have succeeded, at most ``jobs`` at a time,
    the steps others wait for first; a step behind a failed one is skipped. Returns each
    failed or skipped step with the failed step behind it."""
    awaited = {need for step in steps for need in step.needs}
    waiting = sorted(steps, key=lambda step: step not in awaited)
    running: dict[Future, Step] = {}
    succeeded: set[Step] = set()
    failed: dict[Step, Step] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while waiting or running:
            for step in list(waiting):
                cause = next((failed[need] for need in step.needs if need in failed), None)
                if cause is not None:
                    waiting.remove(step)
                    failed[step] = cause
                    step.skip(cause)
                elif len(running) < jobs and succeeded.issuperset(step.needs):
                    waiting.remove(step)
                    running[pool.submit(step.work)] = step
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                step = running.pop(future)
                if future.result():
                    succeeded.add(step)
                else:
                    failed[step] = step
    return failed


def execute(spec: Spec, runs: list[Run], out: Path, jobs: int, threads: int, on_done: Callable[[Run, str], None],
            log: Callable[[str], None]) -> list[Run]:
    """Run what is not done yet, ``jobs`` at a time with ``threads`` torch threads each,
    making each born-again teacher once its run is done, before the runs that learn from
    it; return the runs that failed or could not run (their ``.log`` says why)."""
    steps = {run.name: Step(run.name, partial(_distill, run, threads, on_done), partial(_not_run, run, on_done))
             for run in in_run_order(runs, spec.seeds) if run_state(run) != "done"}
    teachers = _born_again_steps(spec, runs, out, steps, threads, log)
    failed = schedule([*teachers, *steps.values()], jobs)
    return [run for run in runs if steps.get(run.name) in failed]


def _born_again_steps(spec: Spec, runs: list[Run], out: Path, steps: dict[str, Step], threads: int,
                      log: Callable[[str], None]) -> list[Step]:
    """A step per born-again teacher still to make, after its run (if that is still to
    run) and before the runs (in ``steps``) that learn from it."""
    made = []
    for corpus in spec.corpora:
        for teacher in spec.teachers.values():
            if teacher.kind != "born-again" or teacher_files(out / corpus.name, teacher)[1].exists():
                continue
            source = source_run(runs, corpus.name, teacher)
            name = f"{corpus.name}/teachers/{teacher.name}"
            step = Step(name, partial(_make_born_again, out / corpus.name, corpus, teacher, source, threads, log),
                        partial(_not_made, name, log),
                        [steps[source.name]] if source.name in steps else [])
            for run in runs:
                if (run.corpus, run.config.teacher) == (corpus.name, teacher.name) and run.name in steps:
                    steps[run.name].needs.append(step)
            made.append(step)
    return made


def _make_born_again(corpus_dir: Path, corpus: CorpusSpec, teacher: TeacherSpec, source: Run, threads: int,
                     log: Callable[[str], None]) -> bool:
    """Rank the students' training text by the best checkpoint of ``source`` as ``ngteach
    rank --teacher born-again:RUN --scores`` does (gt first, log-probabilities)."""
    model, ranks = teacher_files(corpus_dir, teacher)
    log(f"{corpus_dir.name}: making teacher {teacher.name} (born-again from {source.name}, k {teacher.k})")
    ranks.parent.mkdir(parents=True, exist_ok=True)
    write_json(ranks.parent / TEACHER, teacher_record(teacher))
    corpus_args = ["--corpus", str(student_text(corpus_dir, corpus))] if corpus.train_share else []
    code = _ngteach(["rank", "--model", str(model), "--teacher", f"born-again:{source.directory}", "--scores",
                     "--k", str(teacher.k), *corpus_args, "--output", str(ranks)], ranks.with_name("ranks.log"),
                    threads)
    if code != 0:
        log(f"{corpus_dir.name}/teachers/{teacher.name}: failed (exit {code}), see its ranks.log")
    return code == 0


def _not_made(name: str, log: Callable[[str], None], cause: Step) -> None:
    log(f"{name}: not made, {cause.name} failed")


def _distill(run: Run, threads: int, on_done: Callable[[Run, str], None]) -> bool:
    state = run_state(run)
    if state == "new" and run.directory.exists():  # killed before its first checkpoint
        shutil.rmtree(run.directory)
    args = ["--resume", str(run.directory)] if state == "interrupted" else run.args
    code = _ngteach(["distill", *args], run.log, threads)
    on_done(run, "finished" if code == 0 else f"failed (exit {code}), see its .log")
    return code == 0


def _not_run(run: Run, on_done: Callable[[Run, str], None], cause: Step) -> None:
    why = f"not run: its teacher {run.config.teacher} could not be made ({cause.name} failed)"
    with open(run.log, "a", encoding="utf-8") as f:
        f.write(why + "\n")
    on_done(run, why)


def _ngteach(args: list[str], log: Path, threads: int) -> int:
    """The exit code of ``ngteach ARGS`` with ``threads`` torch threads, its output appended
    to ``log`` (whose folder is made)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "a", encoding="utf-8") as f:
        return subprocess.run([sys.executable, "-m", "ngteach", *args], stdout=f, stderr=f,
                              stdin=subprocess.DEVNULL, env=env).returncode


# ---- the whole experiment ---------------------------------------------------------------------

def run_experiment(spec: Spec, out: Path, jobs: int = 1, threads: int = 1, data_dir: Path | None = None,
                   log: Callable[[str], None] = print, progress=None) -> dict:
    """Prepare, run what is left, and write the results; returns {"failed": [...], "files": [...]}.

    ``threads`` is fixed per run rather than derived from ``jobs``: torch's kernels (MKL's
    on some CPUs) may sum in another order with another thread count, so a run redone with
    another ``--jobs`` would not give the same numbers."""
    from corpora.provenance import provenance

    if jobs < 1:
        raise NgteachError(f"--jobs must be at least 1, not {jobs}")
    if threads < 1:
        raise NgteachError(f"--threads must be at least 1, not {threads}")
    runs = plan_runs(spec, out)
    # Every corpus still to split is read first, so that bad text is refused before anything is written.
    splits = {corpus.name: corpus_splits(spec, corpus, data_dir) for corpus in spec.corpora
              if not (out / corpus.name / "data" / "train.txt").exists()}
    out.mkdir(parents=True, exist_ok=True)
    check_plan(runs, out)
    check_made(spec, out, data_dir)
    write_json(out / "experiment.json", {"name": spec.name, "seeds": spec.seeds, "baseline": spec.baseline,
                                         "provenance": provenance()})
    for corpus in spec.corpora:
        if corpus.name in splits:
            write_corpus(out / corpus.name / "data", splits.pop(corpus.name), corpus_record(spec, corpus, data_dir))
        prepare_teachers(spec, corpus, out, log)
    left = [run for run in runs if run_state(run) != "done"]
    log(f"{spec.name}: {len(runs)} runs, {len(runs) - len(left)} done, {len(left)} to run "
        f"({jobs} at a time, {threads} thread(s) each)")
    advance = progress("runs", len(left)) if progress else (lambda n: None)

    def done(run: Run, outcome: str) -> None:
        advance(1)
        log(f"{run.name}: {outcome}")

    failed = execute(spec, runs, out, jobs, threads, done, log)
    files = write_results(spec, runs, out)
    return {"failed": failed, "files": files}


def write_results(spec: Spec, runs: list[Run], out: Path) -> list[Path]:
    from . import results

    scores = results.RunScores()
    tables = results.summarize(spec, runs, scores)
    results.write_csv(results.finished_rows(runs, out, scores), out / "results.csv")
    write_atomic(out / "results.md", results.markdown(spec, tables).encode("utf-8"))
    return [out / "results.csv", out / "results.md", *results.plot(spec, tables, out / "plots")]


# What a finished run keeps in an archive: enough for the results, `ngteach compare` and a
# reader, without checkpoints (a born-again teacher needs its run's checkpoint: rerun that run).
RUN_RECORD = ("config.json", "environment.json", "metrics.jsonl", "summary.json", "test_logprobs.npy",
              "test_lines.npy", "test_oov.npy")


def archive_experiment(spec: Spec, out: Path, archive: Path) -> int:
    """Copy the results of ``out`` and the record of every finished run into ``archive``
    (an experiment folder ``--results-only`` rewrites the same results from); returns the
    number of runs archived. A previous archive there is replaced whole."""
    check_archive(out, archive)
    done = [run for run in plan_runs(spec, out) if run_state(run) == "done"]
    work = temp_dir(archive.parent, f".{archive.name}.")
    try:
        for name in ("experiment.json", PLAN, "results.csv", "results.md", "plots"):
            _copy(out / name, work / name)
        for corpus in spec.corpora:  # what the splits and teachers were made from
            for record in [Path("data", SOURCE), *(Path("teachers", name, TEACHER) for name in spec.teachers)]:
                _copy(out / corpus.name / record, work / corpus.name / record)
        for run in done:
            target = work / run.directory.relative_to(out)
            for name in RUN_RECORD:
                _copy(run.directory / name, target / name)
            _copy(run.log, target.with_name(run.log.name))
        replace_dir(work, archive)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return len(done)


def check_archive(out: Path, archive: Path) -> None:
    """Refuse an archive folder that cannot be (re)written, before any run starts."""
    if archive.resolve() == out.resolve() or out.resolve() in archive.resolve().parents:
        raise NgteachError(f"{archive}: the archive must be outside the experiment folder {out}")
    if archive.resolve() in out.resolve().parents:  # rewriting the archive would delete the runs
        raise NgteachError(f"{archive}: the experiment folder {out} is inside it; archive elsewhere")
    if archive.exists() and not (archive / "experiment.json").is_file():
        raise NgteachError(f"{archive}: exists and is not an experiment folder; remove it or choose another")
    if not archive.parent.is_dir():
        raise NgteachError(f"{archive.parent}: no such directory for the archive")


def _copy(source: Path, target: Path) -> None:
    """A file or folder copied to ``target`` (its folder made); nothing if there is none."""
    if source.is_dir():
        shutil.copytree(source, target)
    elif source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
