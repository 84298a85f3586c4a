"""``ngteach distill``: train a student from a teacher's ranks, top to bottom.

Every setting lives in :class:`RunConfig` and is saved as ``config.json`` in the run
directory, which then holds:

    config.json       the full configuration (enough for --resume)
    environment.json  what ran it: ngteach version and git commit, library versions, CPU,
                      device, torch threads (and under "resumes", what ran each resume)
    metrics.jsonl     one JSON line per epoch: losses, validation perplexity, lr, speed
    checkpoints/      last.pt (every epoch) and best.pt (best validation perplexity)
    summary.json      valid_ppl, test_ppl, tokens_per_s, wall_s, ... at the end, with the
                      out-of-vocabulary count and share and the perplexity without them,
                      and why training stopped
    test_logprobs.npy the natural-log probability of every test token (for compare)
    test_lines.npy    where each test line starts in test_logprobs
    test_oov.npy      the positions of the out-of-vocabulary (<unk>) test tokens

The objective is cross-entropy plus ``weight`` times the teacher's term:
``ce`` nothing; ``ls`` label smoothing of ``weight``; ``rank`` the Plackett-Luce terms of
the teacher's ranking after the ground truth (weight 1 with the ground truth first is the
paper's plain PL loss); ``kl`` ``(1 - weight) * ce + weight * KL`` from the teacher's top-k
log-probabilities; ``pl`` the paper's objective, the Plackett-Luce terms of every entry
averaged. ``smoothing`` label-smooths the cross-entropy term of ``rank``, ``pl`` and ``kl``
(so a teacher's term can be tried on top of label smoothing), by a constant or, with
``"teacher"``, by the teacher's mass outside its top-k at each position. Evaluation is always
full-softmax cross-entropy on every token.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import typing
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from corpora import NgteachError, check_corpus
from ngram_teacher import NgramModel, RankFile, load_teacher
from ngram_teacher.teachers import DEFAULT_K
from ngram_teacher.model import tokens_sha256
from corpora.files import read_json_object, temp_file, write_atomic, write_json, write_npy, writing
from corpora.provenance import provenance

from .data import (PARTITION_MODES, FileRows, OnlineRows, TeacherReader, TeacherRows, bptt_batches,
                   window_batches)
from .losses import KL_TAILS, OBJECTIVES, TEACHER_SMOOTHING, objective
from .significance import check_run_directory
from .model import (StudentConfig, build_student, carries_state, check_student, config_from_dict, student_config,
                    count_parameters, detach_state, perplexity)

LOSSES = tuple(OBJECTIVES)
TEACHER_LOSSES = ("rank", "pl", "kl")
# The weight of each loss's teacher (or smoothing) term when none is given. Rank: the weight
# chosen on WT2-mini's validation text; larger ones over-fit the count ranks (README, Results).
# pl: the paper's objective, every entry at full weight.
DEFAULT_WEIGHT = {"ce": 0.0, "ls": 0.1, "rank": 0.01, "pl": 1.0, "kl": 0.5}
# The label smoothing of the cross-entropy term when none is given. Rank: 0.1, the setting
# best on validation on both corpora of the fair comparison's screen (README, "When does an
# N-gram teacher help?"); the others none (kl's uniform tail is smoothing of its own).
DEFAULT_SMOOTHING = {"rank": 0.1}
WEIGHT_SCHEDULES = ("constant", "linear:EPOCHS", "linear-tokens:TOKENS", "plateau")
OPTIMIZERS = ("adamw", "sgd", "asgd")
DEFAULT_LR = {"adamw": 2e-3, "sgd": 20.0, "asgd": 20.0}  # the learning rate when none is given
SCHEDULES = ("plateau", "cosine", "constant")
CHECKPOINT_KEYS = ("model", "optimizer", "state", "rng", "config")


@dataclass
class RunConfig:
    """One training run, start to end."""

    model_dir: str = "ngteach-model"  # the vocabulary, and the training text unless train is given
    # The model's vocabulary checksum, recorded when the run starts (None in runs made before
    # it was): eval and born-again refuse a model_dir that no longer has this vocabulary.
    vocab_sha256: str | None = None
    ranks: str = "ranks.bin"
    teacher: str | None = None  # a teacher spec (count:DIR, arpa:FILE) ranking each batch, instead of ranks
    train: str | None = None  # the training text, if not the model's own corpus
    valid: str | None = None  # text; None = hold out the tail of the training stream
    test: str | None = None
    valid_fraction: float = 0.1
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: str = "rank"
    weight: float | None = None  # None: the loss's DEFAULT_WEIGHT
    k: int | None = None  # first k entries of each ranks row (None = all)
    partition: str | None = None  # None: what the teacher declares
    min_order: int = 1  # leave out teacher entries found below this backoff order
    # Label smoothing of the cross-entropy term (--loss ls: its weight), or "teacher": the
    # teacher's probability outside its top-k at each position (what kl's uniform tail spreads).
    smoothing: float | str | None = None  # None: the loss's DEFAULT_SMOOTHING
    # How the teacher's weight changes as training goes on (see teacher_weight).
    weight_schedule: str = "constant"
    kl_tail: str = "uniform"  # what kl does with the teacher's mass outside its top-k (losses.kl_topk)
    optimizer: str = "adamw"
    lr: float | None = None  # None: the optimizer's DEFAULT_LR
    weight_decay: float = 0.01
    schedule: str = "plateau"
    batch_size: int = 20
    clip: float = 0.25
    epochs: int = 40
    max_tokens: int | None = None  # stop after this many training tokens
    max_time: float | None = None  # or after this many seconds
    patience: int = 3  # epochs without a better validation perplexity before stopping
    # The relative drop in validation perplexity that counts as better for patience and the
    # plateau schedule, so a run stops once the rate is too small to matter instead of crawling on.
    min_improvement: float = 0.001
    checkpoint_every: int = 200  # batches between mid-epoch checkpoints (0: only at epoch ends)
    eval_columns: int = 10  # parts of an evaluation text read side by side
    seed: int = 0
    device: str | None = None  # cpu, cuda or cuda:N; None: cuda if there is one
    precision: str = "bf16"  # on a GPU: bf16 autocast or plain fp32 (the CPU always computes in fp32)
    out: str = ""

    def __post_init__(self):
        if self.weight is None:
            self.weight = DEFAULT_WEIGHT.get(self.loss, 0.0)  # an unknown loss is refused by check_config
        if self.smoothing is None:
            self.smoothing = DEFAULT_SMOOTHING.get(self.loss, 0.0)
        if self.lr is None:
            self.lr = DEFAULT_LR.get(self.optimizer, DEFAULT_LR["adamw"])  # an unknown optimizer is refused too

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        """A run's config.json, checked: every field of its type, settings that check_config
        accepts (fields missing from older files get their defaults)."""
        check_run_directory(path.parent)
        values = read_json_object(path, f"{path.parent}: not a run directory (no {path.name})")
        values.pop("size", None)  # runs made before it was dropped: the student's shape says it all
        # Runs made before smoothing was recorded had none; today's per-loss default would differ.
        values.setdefault("smoothing", 0.0)
        student = values.get("student")
        if not isinstance(student, dict):
            raise NgteachError(f"{path}: not a readable run configuration (student must be an object)")
        for prefix, wrong in (("", _wrong_type(cls, values)), ("student.", _wrong_type(StudentConfig, student))):
            if wrong:
                name, expected, value = wrong
                raise NgteachError(f"{path}: not a readable run configuration ({prefix}{name} must be {expected}, "
                                   f"not {value!r})")
        try:
            values["student"] = config_from_dict(student)
            config = cls(**values)
        except (KeyError, TypeError) as e:
            raise NgteachError(f"{path}: not a readable run configuration ({e})") from None
        try:
            check_student(config.student)
            check_config(config)
        except NgteachError as e:
            raise NgteachError(f"{path}: {e}") from None
        return config


# ``ngteach distill``'s options (and an experiment spec's) that are not RunConfig fields by
# name: the student's kind, preset size and overrides of its shape, and model for model_dir.
STUDENT_OPTIONS = ("layers", "width", "embedding", "heads", "inner", "window", "memory", "dropout",
                   "dropout_embedding", "tie_weights")
INTERNAL_FIELDS = ("model_dir", "student", "vocab_sha256")  # set from other options, or recorded by the run


def option_names() -> set[str]:
    """Every option :func:`config_from_options` takes."""
    return ({f.name for f in fields(RunConfig)} - set(INTERNAL_FIELDS)) | {"model", "student", "size",
                                                                            *STUDENT_OPTIONS}


def flag_options() -> set[str]:
    """The options that are true or false (command-line flags)."""
    return {f.name for cls in (RunConfig, StudentConfig) for f in fields(cls)
            if typing.get_type_hints(cls)[f.name] is bool} & option_names()


def config_from_options(options: dict) -> RunConfig:
    """The run of ``ngteach distill``'s options, or an experiment spec's (names with ``_``),
    checked: every RunConfig field by its name, ``model`` for model_dir, ``student`` and
    ``size`` for the preset (lstm, small) that ``STUDENT_OPTIONS`` override. An absent or
    None option takes its default; ``teacher`` and ``ranks`` exclude each other."""
    unknown = sorted(set(options) - option_names())
    if unknown:
        raise NgteachError(f"unknown option {unknown[0]!r}")
    given = {name: value for name, value in options.items() if value is not None}
    if "teacher" in given and "ranks" in given:
        raise NgteachError("give --ranks FILE or --teacher SPEC, not both")
    shape = {name: given.pop(name) for name in STUDENT_OPTIONS if name in given}
    kind, size = given.pop("student", "lstm"), given.pop("size", "small")
    for cls, values in ((RunConfig, given), (StudentConfig, shape), (None, {"student": kind, "size": size})):
        wrong = _wrong_type(cls, values) if cls else next(
            ((name, "a string", value) for name, value in values.items() if not isinstance(value, str)), None)
        if wrong:
            name, expected, value = wrong
            raise NgteachError(f"Invalid value for '--{name.replace('_', '-')}': {value!r} is not {expected}")
    if "model" in given:
        given["model_dir"] = given.pop("model")
    config = RunConfig(**given, student=student_config(kind, size, **shape))
    check_config(config)
    return config


TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object",
              type(None): "null"}


def check_device(device: str) -> None:
    """Refuse a device that is not cpu, cuda or cuda:N (without running anything)."""
    kind, colon, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (colon and not (kind == "cuda" and index.isdigit())):
        raise NgteachError(f"--device must be cpu, cuda or cuda:N, not {device!r}")


def torch_device(device: str | None) -> torch.device:
    """The torch device of ``--device`` (None: cuda if there is one), refused when it is a
    GPU this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    chosen = torch.device(device)
    if chosen.type == "cuda" and (not torch.cuda.is_available()
                                  or (chosen.index or 0) >= torch.cuda.device_count()):
        raise NgteachError(f"--device {device}: there is no such CUDA device here "
                           f"({torch.cuda.device_count()} found)")
    return chosen


def _wrong_type(cls, values: dict) -> tuple[str, str, object] | None:
    """(field, the type it must have, the value) for the first field in ``values`` that does
    not have the type of that field of ``cls`` (a dataclass; JSON integers pass as
    numbers, a nested dataclass as an object), or None."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in values:
            continue
        allowed = tuple(t if t in TYPE_NAMES else dict for t in typing.get_args(hints[f.name]) or (hints[f.name],))
        value = values[f.name]
        if not isinstance(value, allowed + ((int,) if float in allowed else ())) or (
                isinstance(value, bool) and bool not in allowed):
            return f.name, " or ".join(TYPE_NAMES[t] for t in allowed), value
    return None


PRECISIONS = ("bf16", "fp32")


def check_config(config: RunConfig) -> None:
    for name in ("weight", "smoothing", "min_improvement", "valid_fraction", "lr", "weight_decay", "clip",
                 "max_time"):
        if isinstance(getattr(config, name), float) and not math.isfinite(getattr(config, name)):
            raise NgteachError(f"--{name.replace('_', '-')} must be a finite number, not {getattr(config, name)}")
    if not 0 <= config.seed < 2 ** 32:
        raise NgteachError(f"--seed must be between 0 and {2 ** 32 - 1}, not {config.seed}")
    if config.device is not None:
        check_device(config.device)
    if config.precision not in PRECISIONS:
        raise NgteachError(f"--precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}")
    if config.loss not in LOSSES:
        raise NgteachError(f"--loss must be one of {', '.join(LOSSES)}, not {config.loss!r}")
    if config.partition is not None and config.partition not in PARTITION_MODES:
        raise NgteachError(f"--partition must be one of {', '.join(PARTITION_MODES)}, not {config.partition!r}")
    if config.k is not None and config.k < 1:
        raise NgteachError(f"--k must be at least 1, not {config.k}")
    if config.optimizer not in OPTIMIZERS:
        raise NgteachError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")
    if config.schedule not in SCHEDULES:
        raise NgteachError(f"--schedule must be one of {', '.join(SCHEDULES)}, not {config.schedule!r}")
    if config.weight < 0 or (config.loss in ("ls", "kl") and config.weight > 1):
        raise NgteachError(f"--weight {config.weight} is out of range for --loss {config.loss}")
    if (not (config.smoothing == TEACHER_SMOOTHING
             or isinstance(config.smoothing, (int, float)) and 0 <= config.smoothing < 1)
            or (config.smoothing and config.loss not in TEACHER_LOSSES)):
        raise NgteachError(f"--smoothing {config.smoothing} needs --loss rank, pl or kl and a value in [0, 1) or "
                           f"{TEACHER_SMOOTHING} (--loss ls --weight W is label smoothing alone)")
    parse_weight_schedule(config.weight_schedule)
    if config.weight_schedule != "constant" and config.loss not in TEACHER_LOSSES:
        raise NgteachError(f"--weight-schedule {config.weight_schedule} needs a teacher (--loss rank, pl or kl)")
    if config.kl_tail not in KL_TAILS:
        raise NgteachError(f"--kl-tail must be one of {', '.join(KL_TAILS)}, not {config.kl_tail!r}")
    if config.kl_tail != "uniform" and config.loss != "kl":
        raise NgteachError(f"--kl-tail {config.kl_tail} is for --loss kl, not {config.loss}")
    if not 0 <= config.min_improvement < 1:
        raise NgteachError(f"--min-improvement must be in [0, 1), not {config.min_improvement}")
    if not 0 < config.valid_fraction < 1:
        raise NgteachError(f"--valid-fraction must be between 0 and 1, not {config.valid_fraction}")
    if config.checkpoint_every < 0:
        raise NgteachError(f"--checkpoint-every must be 0 or more, not {config.checkpoint_every}")
    for name in ("batch_size", "epochs", "eval_columns", "min_order", "patience"):
        if getattr(config, name) < 1:
            raise NgteachError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(config, name)}")
    for name in ("lr", "clip", "max_tokens", "max_time"):
        if getattr(config, name) is not None and getattr(config, name) <= 0:
            raise NgteachError(f"--{name.replace('_', '-')} must be positive, not {getattr(config, name)}")


# ---- data -------------------------------------------------------------------------------

@dataclass
class RunData:
    train: torch.Tensor
    valid: torch.Tensor
    valid_before: int  # the token before the validation text (its first context)
    test: torch.Tensor | None
    teacher: TeacherReader | None
    vocab_size: int
    vocab_sha256: str
    eos: int
    unk: int  # out-of-vocabulary words are this id
    notes: list[str]


def load_data(config: RunConfig, resume: bool = False) -> RunData:
    """The training stream (the model's own corpus, or ``config.train`` encoded with the
    model's tokenizer), validation and test streams encoded likewise, and the teacher's
    rows: from its ranks file, checked against the stream, or made batch by batch."""
    model = run_model(config, config.out) if resume else NgramModel(config.model_dir)
    tokens = model.tokens() if config.train is None else model.tokenizer.encode_file(check_corpus(config.train))
    stream = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    notes = []
    teacher = None
    if config.loss in TEACHER_LOSSES:
        teacher = TeacherReader(teacher_source(config, model, tokens), config.k, config.min_order, config.partition,
                                dense=config.kl_tail == "full")
        teacher.check_rows(len(stream), len(model.vocab))
        name = teacher.source.name
        if config.loss == "pl" and not teacher.gt_first:
            raise NgteachError(f"{name}: --loss pl ranks the true word first, and this ranks file was made "
                               "without it (--no-gt-first)")
        if config.loss == "kl" and not teacher.has_logprobs:
            raise NgteachError(f"{name}: --loss kl needs teacher log-probabilities in the ranks file "
                               "(scores of kind 'logprob'); this one has " + json.dumps(teacher.source.scores))
        if config.smoothing == TEACHER_SMOOTHING and not teacher.has_logprobs:
            teacher.score_entries(kneser_ney_scorer(config, model, tokens, teacher))
    if config.valid is None:
        cut = int(len(stream) * (1 - config.valid_fraction))
        train, valid, before = stream[:cut], stream[cut:], int(stream[cut - 1])
        notes.append(f"no --valid: holding out the last {len(stream) - cut:,} tokens "
                     f"({config.valid_fraction:.0%}) of the training stream for validation")
    else:
        train, valid, before = stream, encode_file(model, config.valid), model.vocab.eos_id
    test = None if config.test is None else encode_file(model, config.test)
    if len(valid) == 0:
        raise NgteachError("the validation text is empty")
    return RunData(train, valid, before, test, teacher, len(model.vocab), model.meta["vocab_sha256"],
                   model.vocab.eos_id, model.vocab.unk_id, notes)


def kneser_ney_scorer(config: RunConfig, model: NgramModel, tokens: np.ndarray, teacher: TeacherReader):
    """For ``--smoothing teacher`` with a count teacher: the probabilities of its entries
    under the Kneser-Ney model of the same counts (what its leftover mass is taken from)."""
    from ngram_teacher import ArpaTeacher
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney
    from ngram_teacher.teachers import parse_teacher_spec

    name, description = teacher.source.name, teacher.source.description
    if description.get("kind") != "count-ngram":
        raise NgteachError(f"{name}: --smoothing teacher needs the teacher's log-probabilities (a Kneser-Ney, "
                           "ARPA or neural teacher's, in a ranks file made with --scores, or a count teacher's "
                           "model directory); this one has " + json.dumps(teacher.source.scores))
    counts = NgramModel(parse_teacher_spec(config.teacher)[1]) if config.teacher else model
    if (counts.meta["tokens_sha256"], counts.order) != (description["model_tokens_sha256"], description["order"]):
        raise NgteachError(f"{name}: --smoothing teacher takes a count teacher's leftover mass from the Kneser-Ney "
                           f"model of its counts, and {counts.directory} is not its model directory (give that "
                           "as --model, or train with --teacher count:DIR)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallback discounts where a small corpus allows none, as lmplz's
        tables = estimate_kneser_ney(counts, counts.order, LMPLZ_FALLBACK)
    kneser_ney = ArpaTeacher(tables, model.vocab, teacher.k, model=model)
    return lambda positions, ids: kneser_ney.word_logprobs(tokens, positions, ids)


def teacher_source(config: RunConfig, model: NgramModel, tokens: np.ndarray) -> FileRows | OnlineRows:
    """Where the teacher's rows come from: ``config.teacher`` ranking each batch, or the
    ranks file ``config.ranks`` of this very stream (``tokens``) in ``model``'s vocabulary."""
    if config.teacher is not None:
        return OnlineRows(load_teacher(config.teacher, model, config.k or DEFAULT_K), tokens, config.k or DEFAULT_K,
                          config.teacher)
    if not Path(config.ranks).exists():
        raise NgteachError(f"{config.ranks}: no such ranks file (--loss {config.loss} learns from one, made "
                           "by 'ngteach rank', or from --teacher SPEC; --loss ce trains without a teacher)")
    ranks = RankFile(config.ranks)
    ranks.check_matches(model.meta["vocab_sha256"], tokens_sha256(tokens),
                        f"the model {config.model_dir} and its corpus" if config.train is None else
                        f"{config.train} in the vocabulary of {config.model_dir} (ngteach rank --corpus "
                        f"{config.train} makes its ranks)")
    return FileRows(ranks)


def run_model(config: RunConfig, run_dir: str | os.PathLike) -> NgramModel:
    """The model directory of a made run, refused if it lacks the vocabulary the run recorded."""
    if not Path(config.model_dir).exists():
        relative = "" if Path(config.model_dir).is_absolute() else (
            " (the path is relative to the folder the run was made in: run this from there)")
        raise NgteachError(f"{run_dir}: the run's model directory {config.model_dir} is missing{relative}")
    model = NgramModel(config.model_dir)
    if config.vocab_sha256 is not None and model.meta["vocab_sha256"] != config.vocab_sha256:
        raise NgteachError(f"{run_dir}: the model directory {config.model_dir} has another vocabulary than the "
                           "run was trained with (a rebuilt model, or another folder's of the same name)")
    return model


def encode_file(model: NgramModel, path: str) -> torch.Tensor:
    """A text encoded with the teacher model's tokenizer."""
    return torch.from_numpy(model.tokenizer.encode_file(check_corpus(path)).astype(np.int64))


# ---- the teacher's weight ---------------------------------------------------------------

def parse_weight_schedule(schedule: str) -> tuple[str, float | None]:
    """(kind, span) of a ``--weight-schedule``: ``constant``, ``linear:EPOCHS`` and
    ``linear-tokens:TOKENS`` (the weight falls in a straight line to 0 over that span),
    or ``plateau`` (the teacher is dropped at the first epoch whose validation perplexity
    is not ``min_improvement`` better than the best before it)."""
    kind, _, span = schedule.partition(":")
    if kind in ("constant", "plateau") and not span:
        return kind, None
    try:
        value = float(span) if kind == "linear" else int(span) if kind == "linear-tokens" else None
    except ValueError:
        value = None
    if value is None or not 0 < value < math.inf:
        raise NgteachError(f"--weight-schedule must be one of {', '.join(WEIGHT_SCHEDULES)} (a positive "
                           f"span), not {schedule!r}")
    return kind, value


def teacher_weight(config: RunConfig, tokens: int, epoch_tokens: int, history: list[float]) -> float:
    """The teacher's weight after ``tokens`` training tokens (``epoch_tokens`` an epoch),
    given the validation losses of the epochs so far (``history``)."""
    kind, span = parse_weight_schedule(config.weight_schedule)
    if kind == "linear":
        return config.weight * max(0.0, 1 - tokens / (span * epoch_tokens))
    if kind == "linear-tokens":
        return config.weight * max(0.0, 1 - tokens / span)
    if kind == "plateau" and plateau_reached(history, config.min_improvement):
        return 0.0
    return config.weight


def plateau_reached(history: list[float], min_improvement: float) -> bool:
    """Whether an epoch of ``history`` (validation losses) was not ``min_improvement``
    better in perplexity than the best epoch before it."""
    best = math.inf
    for loss in history:
        if not math.expm1(best - loss) > min_improvement:
            return True
        best = min(best, loss)
    return False


# ---- evaluation -------------------------------------------------------------------------

@torch.no_grad()
def token_logprobs(model: nn.Module, stream: torch.Tensor, before: int, columns: int, length: int,
                   device: torch.device) -> np.ndarray:
    """log p(token) for every token of ``stream``, full softmax, in order.

    The token ``before`` (``<eos>`` for a text of its own) is put before the text so its
    first token is predicted too. The text is read as ``columns`` parts, each in pieces of
    ``length`` tokens with the state (LSTM, Transformer memory) carried from piece to piece.
    """
    model.eval()
    padded = torch.cat([torch.tensor([before]), stream])
    out = torch.empty(len(stream), dtype=torch.float32)
    per_column = -(-len(stream) // columns)
    for c in range(columns):
        lo, hi = c * per_column, min((c + 1) * per_column, len(stream))
        state = None
        for start in range(lo, hi, length):
            stop = min(start + length, hi)
            inputs = padded[start:stop][None].to(device)
            logits, state = model(inputs, state)
            logp = logits[0].float().log_softmax(-1)
            out[start:stop] = logp.gather(-1, padded[start + 1:stop + 1, None].to(device))[:, 0].cpu()
    return out.numpy()


def evaluate_run(run_dir: str | os.PathLike, text: str | os.PathLike) -> np.ndarray:
    """Token log-probabilities of ``text`` under the best checkpoint of a run (on the CPU)."""
    return evaluate_text(run_dir, text)[0]


def evaluate_text(run_dir: str | os.PathLike, text: str | os.PathLike,
                  device: str = "cpu") -> tuple[np.ndarray, np.ndarray, int]:
    """(token log-probabilities, token ids, the ``<unk>`` id) of ``text`` under the best
    checkpoint of a run, on ``device``."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / "config.json")
    teacher = run_model(config, run_dir)
    where = torch_device(device)
    model = load_student(run_dir, config, len(teacher.vocab)).to(where)
    tokens = encode_file(teacher, str(text))
    logprobs = token_logprobs(model, tokens, teacher.vocab.eos_id, config.eval_columns, config.student.window, where)
    return logprobs, tokens.numpy(), teacher.vocab.unk_id


def load_student(run_dir: Path, config: RunConfig, vocab_size: int) -> nn.Module:
    """The student of a run with the weights of its best checkpoint."""
    model = build_student(config.student, vocab_size)
    path = run_dir / "checkpoints" / "best.pt"
    load_weights(model, load_checkpoint(path), path, config)
    return model


def mean_nll(logprobs: np.ndarray) -> float:
    return float(-logprobs.astype(np.float64).mean())


# A test text with more out-of-vocabulary tokens than this share gets a warning: whatever
# probability a model keeps for <unk> then weighs heavily on its perplexity.
OOV_WARNING_SHARE = 0.05


def oov_figures(split: str, logprobs: np.ndarray, tokens: np.ndarray, unk: int) -> dict:
    """``{split}_oov`` (how many tokens are out of the vocabulary, i.e. are ``<unk>``, as
    KenLM counts them), ``{split}_oov_share`` and ``{split}_ppl_no_oov`` (the perplexity
    of the other tokens; None if there are none)."""
    oov = np.asarray(tokens) == unk
    kept = logprobs[~oov]
    return {f"{split}_oov": int(oov.sum()), f"{split}_oov_share": float(oov.mean()),
            f"{split}_ppl_no_oov": perplexity(mean_nll(kept)) if len(kept) else None}


def describe_oov(figures: dict, split: str) -> list[str]:
    """A line on the out-of-vocabulary tokens of ``figures`` (:func:`oov_figures`), and a
    warning when they are many."""
    n, share, ppl = figures[f"{split}_oov"], figures[f"{split}_oov_share"], figures[f"{split}_ppl_no_oov"]
    excluding = "" if ppl is None else f"; perplexity without them {ppl:.2f}"
    lines = [f"{split}: {n:,} out-of-vocabulary tokens (<unk>), {share:.1%}{excluding}"]
    if share > OOV_WARNING_SHARE:
        lines.append(f"warning: {share:.1%} of the {split} tokens are out-of-vocabulary; how much probability a "
                     "model leaves to <unk> weighs heavily on its perplexity (compare with --exclude-oov)")
    return lines


# ---- checkpoints ------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save into a temporary file, then rename: a kill, or a full disk, leaves the
    old one whole (a failed write is one line naming the checkpoint)."""
    with writing(path, "the checkpoint"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_file(path.parent, f".{path.name}.")
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        except RuntimeError as e:  # torch reports a failed write (a full disk) as a RuntimeError
            raise OSError(str(e).splitlines()[0].strip()) from None
        finally:
            tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("model",)) -> dict:
    """A checkpoint, refused unless it is a dict with ``keys`` and weights under "model"."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise NgteachError(f"{path}: no checkpoint here") from None
    except Exception as e:  # a damaged file: torch raises several kinds
        raise NgteachError(f"{path}: unreadable checkpoint ({e})") from None
    if not (isinstance(checkpoint, dict) and all(key in checkpoint for key in keys)
            and isinstance(checkpoint.get("model"), dict)):
        raise NgteachError(f"{path}: not a checkpoint of ngteach distill (a dict with {', '.join(keys)})")
    return checkpoint


def load_weights(model: nn.Module, checkpoint: dict, path: Path, config: RunConfig) -> None:
    """The checkpoint's weights into ``model``; weights of another shape are one line."""
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise NgteachError(f"{path}: the weights do not fit the {config.student.kind} student of config.json on the "
                           f"vocabulary of {config.model_dir} (was either changed after the run?): {detail}") from None


def _rng_state(distributed: "_Distributed") -> dict:
    """Every process's torch generators (dropout differs per process) and the shared
    numpy/python ones. Under torchrun all processes must call this together."""
    local = {"cpu": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    processes = distributed.gather(local)
    return {"processes": processes, "numpy": np.random.get_state(), "python": random.getstate()}


def _restore_rng(state: dict, distributed: "_Distributed") -> None:
    if len(state["processes"]) != distributed.world:
        raise NgteachError(f"the run was trained by {len(state['processes'])} process(es); "
                           f"resume it with the same number, not {distributed.world}")
    mine = state["processes"][distributed.rank]
    torch.set_rng_state(mine["cpu"])
    if mine["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(mine["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


# ---- training ---------------------------------------------------------------------------

NONMONO = 5  # NT-ASGD starts averaging when validation is worse than 5 epochs ago


def make_optimizer(config: RunConfig, model: nn.Module, averaging: bool = False) -> torch.optim.Optimizer:
    """AdamW, SGD, or NT-ASGD as in AWD-LSTM: SGD until ``averaging`` starts, then averaged
    SGD, whose running average of the weights is what gets evaluated and saved as best."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd" or not averaging:
        return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.ASGD(model.parameters(), lr=config.lr, t0=0, lambd=0.0, weight_decay=config.weight_decay)


def starts_averaging(config: RunConfig, state: dict) -> bool:
    """AWD-LSTM's non-monotone trigger: worse than the best of all but the last NONMONO epochs."""
    history = state["history"]
    return (config.optimizer == "asgd" and not state["averaging"] and len(history) > NONMONO
            and history[-1] > min(history[:-NONMONO]))


@contextmanager
def averaged_weights(model: nn.Module, optimizer: torch.optim.Optimizer):
    """Evaluate (and save as best) the averaged weights of averaged SGD; others unchanged."""
    averages = [(p, optimizer.state[p]["ax"]) for p in model.parameters()
                if isinstance(optimizer, torch.optim.ASGD) and "ax" in optimizer.state[p]]
    saved = [p.detach().clone() for p, _ in averages]
    with torch.no_grad():
        for p, average in averages:
            p.copy_(average)
    try:
        yield
    finally:
        with torch.no_grad():
            for (p, _), weights in zip(averages, saved):
                p.copy_(weights)


def schedule_lr(config: RunConfig, optimizer: torch.optim.Optimizer, epoch: int, progressed: bool) -> None:
    """After each epoch: ``plateau`` divides the rate by 4 when validation did not get
    ``min_improvement`` better,
    ``cosine`` follows a cosine from lr to 0 over ``epochs``; NT-ASGD keeps its rate."""
    if config.optimizer == "asgd":
        return
    for group in optimizer.param_groups:
        if config.schedule == "plateau" and not progressed:
            group["lr"] /= 4
        elif config.schedule == "cosine":
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


def train_batches(config: RunConfig, data: RunData, epoch: int, rank: int, world: int):
    student = config.student
    if carries_state(student):
        return bptt_batches(data.train, config.batch_size * world, student.window, rank, world)
    return window_batches(data.train, config.batch_size, student.window, config.seed, epoch, rank, world)


def run(config: RunConfig, resume: bool = False, log: Callable[[str], None] = print,
        progress: Callable[[str, int | None], Callable[[int], None]] | None = None) -> dict:
    """Train (or continue) the run in ``config.out``; return its summary. A new run that
    fails before its first checkpoint is saved leaves no run directory behind (an existing
    run keeps its last good checkpoint, to --resume from)."""
    out = Path(config.out)
    created = not resume and not out.exists() and os.environ.get("RANK", "0") == "0"  # torchrun: the main process
    try:
        return _run(config, resume, log, progress)
    except BaseException:
        if created and not (out / "checkpoints" / "last.pt").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(config: RunConfig, resume: bool, log: Callable[[str], None], progress) -> dict:
    check_config(config)
    distributed = _Distributed(config.device, config.precision)
    torch.manual_seed(config.seed + distributed.rank)
    np.random.seed(config.seed)
    random.seed(config.seed)
    data = load_data(config, resume)
    next(train_batches(config, data, 1, distributed.rank, distributed.world), None)  # a text too short fails here
    if not resume:
        config.vocab_sha256 = data.vocab_sha256
        if data.teacher is not None:  # the config records the partitions the teacher declared
            config.partition = data.teacher.partition
    for note in data.notes:
        log(note)
    device = distributed.device
    model = build_student(config.student, data.vocab_size).to(device)
    optimizer, state = _open_run(config, model, resume, distributed, log)
    wrapped = distributed.wrap(model)
    log(f"{config.student.kind} student, {count_parameters(model):,} parameters, loss {config.loss}"
        f"{f' (weight {config.weight})' if config.loss != 'ce' else ''}, on {device}")
    started = time.perf_counter() - state["wall_s"]

    def over_budget(partial: dict) -> bool:
        """Checked after every batch, so that a budget can end an epoch early; every process
        stops at the same batch."""
        spent = _out_of_budget(config, state["tokens"] + partial["tokens"], time.perf_counter() - started)
        return any(distributed.gather(spent))

    budgeted = config.max_tokens is not None or config.max_time is not None
    epoch_tokens = sum(batch.targets.numel() for batch in train_batches(config, data, 1, distributed.rank,
                                                                        distributed.world)) * distributed.world

    def weight(tokens: int) -> float:
        """The teacher's weight ``tokens`` into the current epoch."""
        return teacher_weight(config, state["tokens"] + tokens, epoch_tokens, state["history"])

    while (state["epoch"] < config.epochs and state["bad_epochs"] < config.patience
           and not _out_of_budget(config, state["tokens"], state["wall_s"])):
        epoch = state["epoch"] + 1
        # Mid-epoch checkpoints hold one process's LSTM state, so only a single process saves them.
        mid_epoch = ((lambda: _record_epoch(config, None, model, optimizer, state, None, _rng_state(distributed)))
                     if distributed.world == 1 else None)
        partial = _train_epoch(config, data, wrapped, optimizer, epoch, distributed, device, progress,
                               state["partial"], mid_epoch, over_budget if budgeted else None, weight)
        state["partial"] = _fresh_epoch()
        tokens, train_seconds = partial["tokens"], partial["seconds"]
        train_loss, train_ce = partial["loss_sum"] / partial["tokens"], partial["ce_sum"] / partial["tokens"]
        last_weight = weight(tokens)  # the weight at the epoch's end, before its validation counts
        with averaged_weights(model, optimizer):
            valid_logprobs = token_logprobs(model, data.valid, data.valid_before, config.eval_columns,
                                            config.student.window, device)
            valid_nll = mean_nll(valid_logprobs)
            weights = {k: v.clone() for k, v in model.state_dict().items()}
        improved = valid_nll < state["best_valid"]
        # Perplexity ratio as a difference of log-perplexities: exp(best - new) - 1 is the relative drop.
        progressed = math.expm1(state["best_valid"] - valid_nll) > config.min_improvement
        state["history"].append(valid_nll)
        state.update(epoch=epoch, tokens=state["tokens"] + tokens, train_s=state["train_s"] + train_seconds,
                     wall_s=time.perf_counter() - started)
        state["bad_epochs"] = 0 if progressed else state["bad_epochs"] + 1
        if improved:
            state.update(best_valid=valid_nll, best_epoch=epoch)
        metrics = {"epoch": epoch, "tokens": state["tokens"], "train_loss": train_loss,
                   "train_ppl": perplexity(train_ce), "valid_ppl": perplexity(valid_nll),
                   "valid_ppl_no_oov": oov_figures("valid", valid_logprobs, data.valid.numpy(), data.unk)[
                       "valid_ppl_no_oov"],
                   "teacher_weight": last_weight if config.loss in TEACHER_LOSSES else None,
                   "lr": optimizer.param_groups[0]["lr"], "tokens_per_s": tokens / train_seconds,
                   "wall_s": state["wall_s"]}
        schedule_lr(config, optimizer, epoch, progressed)
        if starts_averaging(config, state):
            state["averaging"] = True
            optimizer = make_optimizer(config, model, averaging=True)
            log(f"epoch {epoch}: validation stalled, switching to averaged SGD")
        rng = _rng_state(distributed)
        if distributed.is_main:
            _record_epoch(config, metrics, model, optimizer, state, weights if improved else None, rng)
        log(f"epoch {epoch}: train ppl {metrics['train_ppl']:.2f}, valid ppl {metrics['valid_ppl']:.2f}"
            f"{' (best)' if improved else ''}, {metrics['tokens_per_s']:,.0f} tokens/s")
        if state["bad_epochs"] >= config.patience:
            log(f"stopping: validation perplexity {config.min_improvement:.1%} better or more not seen "
                f"for {config.patience} epochs")
    stopped = _why_stopped(config, state)
    if stopped != "early stopping":  # early stopping said why above
        log(f"stopping: {_STOP_REASONS[stopped].format(config=config)}")
    summary = {**_finish(config, data, model, state, device, distributed), "stopped": stopped}
    if distributed.is_main:
        write_json(Path(config.out) / "summary.json", summary)
        if summary["test_ppl"] is not None:
            for line in describe_oov(summary, "test"):
                log(line)
    distributed.close()
    return summary


_STOP_REASONS = {"epochs": "all {config.epochs} epochs done", "max-tokens": "--max-tokens {config.max_tokens} reached",
                 "max-time": "--max-time {config.max_time} s reached"}


def _why_stopped(config: RunConfig, state: dict) -> str:
    """``early stopping``, ``max-tokens``, ``max-time`` or ``epochs``: what ended training."""
    if state["bad_epochs"] >= config.patience:
        return "early stopping"
    if config.max_tokens is not None and state["tokens"] >= config.max_tokens:
        return "max-tokens"
    if config.max_time is not None and state["wall_s"] >= config.max_time:
        return "max-time"
    return "epochs"


def _open_run(config: RunConfig, model: nn.Module, resume: bool, distributed: "_Distributed", log) -> tuple:
    """(optimizer, state): fresh, or where the last checkpoint of ``config.out`` left off."""
    out = Path(config.out)
    if resume:
        checkpoint = load_checkpoint(out / "checkpoints" / "last.pt", CHECKPOINT_KEYS)
        load_weights(model, checkpoint, out / "checkpoints" / "last.pt", config)
        state = checkpoint["state"]
        if not (isinstance(state, dict) and set(_fresh_state()) <= set(state)):
            raise NgteachError(f"{out / 'checkpoints' / 'last.pt'}: not a checkpoint of ngteach distill "
                               "(its training state is incomplete)")
        optimizer = make_optimizer(config, model, state["averaging"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        _restore_rng(checkpoint["rng"], distributed)
        within = f", batch {state['partial']['batch']}" if state["partial"]["batch"] else ""
        log(f"resuming {out} after epoch {state['epoch']}{within}")
        if distributed.is_main:
            _record_resume(out / "environment.json", state, distributed)
            _forget_epochs_after(out / "metrics.jsonl", state["epoch"])
        return optimizer, state
    if distributed.is_main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
        write_json(out / "environment.json", _environment(distributed))
        (out / "metrics.jsonl").write_text("")
    return make_optimizer(config, model), _fresh_state()


def _forget_epochs_after(path: Path, epoch: int) -> None:
    """Drop the metrics of epochs after ``epoch`` (the checkpoint's): an epoch's line is
    written just before its checkpoint, so a run killed between the two has a line for an
    epoch it will train again."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
    if len(kept) < len(lines):
        with writing(path, "the metrics"):
            write_atomic(path, "".join(kept).encode("utf-8"))


def _environment(distributed: "_Distributed") -> dict:
    return {**provenance(), "device": str(distributed.device), "processes": distributed.world,
            "threads": torch.get_num_threads()}


def _record_resume(path: Path, state: dict, distributed: "_Distributed") -> None:
    """Append what runs this resume, and where it picks up, to environment.json's resumes:
    a run resumed under other code or on another machine says so."""
    environment = read_json_object(path, "") if path.exists() else {}  # absent in runs older than it
    resumed = {**_environment(distributed), "epoch": state["epoch"], "batch": state["partial"]["batch"]}
    write_json(path, {**environment, "resumes": [*environment.get("resumes", []), resumed]})


def _fresh_state() -> dict:
    """Where a run stands before its first batch: what checkpoints save and resume from."""
    return {"epoch": 0, "tokens": 0, "best_valid": math.inf, "best_epoch": 0, "bad_epochs": 0,
            "wall_s": 0.0, "train_s": 0.0, "history": [], "averaging": False, "partial": _fresh_epoch()}


def _record_epoch(config: RunConfig, metrics: dict | None, model: nn.Module, optimizer, state: dict,
                  best_weights: dict | None, rng: dict) -> None:
    """Append the epoch's metrics (None mid-epoch); save last.pt, and best.pt when
    ``best_weights`` are given (the evaluated weights: NT-ASGD's averages)."""
    out = Path(config.out)
    if metrics is not None:
        with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
    checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                  "rng": rng, "config": asdict(config)}
    if best_weights is not None:
        save_checkpoint(out / "checkpoints" / "best.pt", {**checkpoint, "model": best_weights})
    save_checkpoint(out / "checkpoints" / "last.pt", checkpoint)


def _fresh_epoch() -> dict:
    """Where an unfinished epoch stands: saved in mid-epoch checkpoints, so that a resumed
    run goes on from the batch after the last one saved, with the LSTM state of then."""
    return {"batch": 0, "loss_sum": 0.0, "ce_sum": 0.0, "tokens": 0, "seconds": 0.0, "hidden": None}


def _train_epoch(config, data, model, optimizer, epoch, distributed, device, progress, partial: dict,
                 checkpoint: Callable[[], None] | None, over_budget: Callable[[dict], bool] | None,
                 weight: Callable[[int], float]) -> dict:
    """Train on the epoch's batches from ``partial["batch"]`` on; update and return ``partial``.
    ``checkpoint()`` is called every ``config.checkpoint_every`` batches; the epoch ends
    early once ``over_budget(partial)``; ``weight(tokens)`` is the teacher's weight after
    ``tokens`` tokens of the epoch."""
    model.train()
    batches = list(train_batches(config, data, epoch, distributed.rank, distributed.world))
    advance = progress(f"epoch {epoch}", len(batches)) if progress and distributed.is_main else None
    if advance:
        advance(partial["batch"])
    hidden = None if partial["hidden"] is None else tuple(h.to(device) for h in partial["hidden"])
    started = time.perf_counter() - partial["seconds"]
    # On a GPU an online teacher ranks the next batch in a worker thread while this one trains.
    ahead = device.type == "cuda" and data.teacher is not None and isinstance(data.teacher.source, OnlineRows)
    rows = _teacher_rows(data.teacher, batches[partial["batch"]:], ahead)
    for index in range(partial["batch"], len(batches)):
        batch = batches[index]
        teacher = next(rows)
        with distributed.autocast():
            logits, hidden = model(batch.inputs.to(device), hidden)
        loss, ce = objective(config, logits, batch.targets.to(device), _to(teacher, device), weight(partial["tokens"]))
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        hidden = detach_state(hidden)
        partial.update(batch=index + 1, loss_sum=partial["loss_sum"] + float(loss.detach().sum()),
                       ce_sum=partial["ce_sum"] + float(ce.detach().sum()),
                       tokens=partial["tokens"] + batch.targets.numel() * distributed.world,
                       seconds=time.perf_counter() - started, hidden=hidden)
        if checkpoint and config.checkpoint_every and (index + 1) % config.checkpoint_every == 0:
            checkpoint()
        if advance:
            advance(1)
        if over_budget and over_budget(partial):
            break
    return partial


def _teacher_rows(teacher: TeacherReader | None, batches: list, ahead: bool):
    """The teacher's rows of each batch in turn (None without a teacher); with ``ahead``,
    each batch's rows are made in a worker thread while the batch before it trains."""
    if teacher is None:
        yield from (None for _ in batches)
    elif not ahead:
        yield from (teacher.rows(batch.positions) for batch in batches)
    else:
        with ThreadPoolExecutor(1) as worker:
            coming = [worker.submit(teacher.rows, batch.positions) for batch in batches[:1]]
            for batch in batches[1:] + [None]:
                made = coming.pop().result()
                if batch is not None:
                    coming.append(worker.submit(teacher.rows, batch.positions))
                yield made


def _to(teacher: TeacherRows | None, device: torch.device) -> TeacherRows | None:
    if teacher is None or device.type == "cpu":
        return teacher
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return TeacherRows(move(teacher.ranks), move(teacher.partitions), move(teacher.mask), move(teacher.logprobs))


def _out_of_budget(config: RunConfig, tokens: int, seconds: float) -> bool:
    return ((config.max_tokens is not None and tokens >= config.max_tokens)
            or (config.max_time is not None and seconds >= config.max_time))


def _finish(config: RunConfig, data: RunData, model: nn.Module, state: dict, device, distributed) -> dict:
    """Evaluate the best checkpoint on the validation and test texts; write the summary."""
    out = Path(config.out)
    best = load_checkpoint(out / "checkpoints" / "best.pt") if (out / "checkpoints" / "best.pt").exists() else None
    if best is not None:
        model.load_state_dict(best["model"])
    summary = {"valid_ppl": perplexity(state["best_valid"]), "best_epoch": state["best_epoch"],
               "epochs": state["epoch"], "train_tokens": state["tokens"],
               "tokens_per_s": state["tokens"] / max(state["train_s"], 1e-9), "wall_s": state["wall_s"],
               "parameters": count_parameters(model), "test_ppl": None}
    valid_logprobs = token_logprobs(model, data.valid, data.valid_before, config.eval_columns, config.student.window,
                                    device)
    summary.update(oov_figures("valid", valid_logprobs, data.valid.numpy(), data.unk))
    if data.test is not None:
        logprobs = token_logprobs(model, data.test, data.eos, config.eval_columns, config.student.window, device)
        summary.update(test_ppl=perplexity(mean_nll(logprobs)), test_tokens=len(logprobs), test_text=config.test,
                       test_tokens_sha256=tokens_sha256(data.test.numpy()),
                       **oov_figures("test", logprobs, data.test.numpy(), data.unk))
        if distributed.is_main:
            write_npy(out / "test_logprobs.npy", logprobs)
            write_npy(out / "test_oov.npy", np.flatnonzero(data.test.numpy() == data.unk).astype(np.int64))
            line_starts = np.flatnonzero(data.test.numpy() == data.eos) + 1
            write_npy(out / "test_lines.npy", np.concatenate([[0], line_starts[line_starts < len(logprobs)],
                                                             [len(logprobs)]]).astype(np.int64))
    return summary


class _Distributed:
    """One process, or one of several started by torchrun (gloo on CPU, nccl on GPUs)."""

    def __init__(self, device: str | None = None, precision: str = "bf16"):
        self.precision = precision
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None or (device == "cuda" and self.world > 1):  # torchrun: each process its own GPU
            device = "cpu" if device is None and not torch.cuda.is_available() else f"cuda:{local}"
        self.device = torch_device(device)
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def gather(self, value) -> list:
        """``value`` from every process, in rank order (all processes must call this)."""
        if self.world == 1:
            return [value]
        values = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def autocast(self):
        """bf16 autocast on GPUs unless fp32 was asked for; plain float32 on the CPU (exact and
        repeatable)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.device.type == "cuda" and self.precision == "bf16")

    def close(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()
