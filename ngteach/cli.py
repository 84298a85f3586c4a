"""The ``ngteach`` command line: a thin layer over the library, the one place that
imports every layer (corpora, ngram_teacher, student) and that none of them imports.

Every failure a user can cause ends as one line on stderr (``ngteach: error: ...``) and
a non-zero exit: 2 for a malformed command line, 1 for bad input, 130 when interrupted.
The teacher's commands are here; the student's (distill, eval, compare, experiment,
demo) in :mod:`ngteach.training`.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import typer

import student  # noqa: F401  (adds the neural teachers' specs)
from corpora import NgteachError, WordTokenizer
from corpora.progress import progress_bars, say
from corpora.provenance import TOOL_VERSION
from corpora.registry import corpus_argument
from corpora.text import DECOMPRESS
from ngram_teacher.arpa import write_arpa
from ngram_teacher.arpa_rank import arpa_continuations, load_teacher as load_arpa_teacher
from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, DiscountFallbackWarning, estimate_kneser_ney
from ngram_teacher.model import MAX_ORDER, NgramModel, build_model
from ngram_teacher.rank import continuations
from ngram_teacher.rankfile import RankFile
from ngram_teacher.cloze import ClozeTeacher
from ngram_teacher.bounded import build_bounded, parse_size
from ngram_teacher.infini import InfiniTeacher, build_index
from ngram_teacher.merge import merge_models
from ngram_teacher.teachers import (NGRAM_KINDS, CountTeacher, load_teacher, parse_teacher_spec, teacher_rows,
                                    write_ranks)

from . import training

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Turn a text corpus into an N-gram teacher, and train language models from its ranks.")

DEFAULT_MODEL = Path("ngteach-model")
ModelOption = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model directory made by 'ngteach build'.")


def _version(show: bool) -> None:
    if show:
        print(f"ngteach {TOOL_VERSION}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Turn a text corpus into an N-gram teacher, and train language models from its ranks."""


def _tokenize_with(tokenizer: Optional[str], vocab_size: Optional[int], sp_model: Optional[Path],
                   min_count: Optional[int], max_vocab: Optional[int]):
    """The function that turns the corpus into (tokenizer, ids) for ``build``. The options
    of one tokenizer given with the other are refused, not ignored."""
    kind = tokenizer or ("sentencepiece" if sp_model is not None else "word")
    if kind not in ("word", "sentencepiece"):
        raise NgteachError(f"--tokenizer must be 'word' or 'sentencepiece', not {kind!r}")
    if kind == "word":
        other, foreign = "sentencepiece", _given(vocab_size=vocab_size, sp_model=sp_model)
    else:
        other, foreign = "word", _given(min_count=min_count, max_vocab=max_vocab)
    if foreign:
        raise NgteachError(f"{' and '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} for --tokenizer {other}, "
                           f"not {kind}")
    if kind == "word":
        return partial(WordTokenizer.train, min_count=min_count or 1, max_size=max_vocab)
    from corpora.subword import SentencePieceTokenizer

    if sp_model is not None and vocab_size is not None:
        raise NgteachError("--sp-model uses an existing sentencepiece model and --vocab-size trains a new one: "
                           "give only one")
    if sp_model is not None:
        loaded = SentencePieceTokenizer.from_model(sp_model)
        return lambda path, on_bytes: (loaded, loaded.encode_file(path, on_bytes))
    if vocab_size is None:
        raise NgteachError("--tokenizer sentencepiece needs --vocab-size N (or --sp-model FILE)")
    return partial(SentencePieceTokenizer.train, vocab_size=vocab_size)


def _given(**options) -> list[str]:
    """The command-line names of the options that were given (are not None)."""
    return [f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]


@app.command()
def build(
    corpus: str = typer.Argument(..., metavar="CORPUS",
                                 help="Text file (UTF-8; .gz, .bz2 and .xz are read decompressed), a named corpus "
                                      "such as wikitext-2:valid, or - for standard input."),
    order: int = typer.Option(4, "--order", "-n", min=1, max=MAX_ORDER, help="Highest n-gram order."),
    out: Path = typer.Option(DEFAULT_MODEL, "--out", "-o", help="Model directory to write."),
    tokenizer: Optional[str] = typer.Option(None, help="word (whitespace + <eos> per line; the default) or "
                                                       "sentencepiece (the default with --sp-model)."),
    vocab_size: Optional[int] = typer.Option(None, min=8, help="Sentencepiece vocabulary size to train."),
    sp_model: Optional[Path] = typer.Option(None, help="Use an existing sentencepiece .model."),
    # None rather than 1, so that giving it with sentencepiece is noticed
    min_count: Optional[int] = typer.Option(None, min=1, help="Words seen fewer times become <unk> (default 1)."),
    max_vocab: Optional[int] = typer.Option(None, min=2, help="Keep at most this many words (with <unk> and <eos>)."),
    data_dir: Optional[Path] = typer.Option(None, help="Local mirror of named corpora (NAME/SPLIT.txt)."),
    infini: bool = typer.Option(False, "--infini", help="Also index the corpus for the unbounded-order teacher "
                                                        "(infini:DIR; otherwise indexed on its first use)."),
    memory: Optional[str] = typer.Option(None, "--memory", metavar="SIZE",
                                         help="Count within this much working memory (e.g. 2G), whatever the corpus "
                                              "size, spilling sorted runs to a folder beside --out; the same model "
                                              "(word vocabularies)."),
) -> None:
    """Count the n-grams of CORPUS and write a model directory.

    \b
    Examples:
      ngteach build corpus.txt --order 4
      ngteach build wikitext-2:train --data-dir ../shared/corpora --min-count 2
      zcat corpus.txt.gz | ngteach build - --order 5
      ngteach build corpus.txt --infini     # then: ngteach rank --teacher infini:model
      ngteach build big.txt --memory 2G
    """
    _check_utf8(str(out))  # the model's vocabulary (marisa-trie) is opened by a UTF-8 path
    started = time.perf_counter()
    tokenize = _tokenize_with(tokenizer, vocab_size, sp_model, min_count, max_vocab)
    budget = None if memory is None else parse_size(memory)
    if budget is not None and (tokenizer or "word") != "word":
        raise NgteachError("--memory builds word vocabularies; sentencepiece reads the whole corpus at once")
    if not out.resolve().parent.is_dir():
        raise NgteachError(f"{out.parent}: no such directory for --out")
    with corpus_argument(corpus, data_dir, out.resolve().parent) as (path, source), progress_bars() as bars:
        read = bars.add(f"read {Path(source).name}", _text_size(path), "bytes")
        counted = bars.add("count", order, "orders")
        if budget is None:
            build_model(path, out, order, tokenize, on_bytes=read, on_order=lambda m: counted(1), source=source)
        else:
            build_bounded(path, out, order, budget, min_count or 1, max_vocab, on_bytes=read,
                          on_order=lambda m: counted(1), source=source)
    if infini:
        build_index(NgramModel(out))
    meta = NgramModel(out).meta
    say(f"built {out}: order {order}, {meta['n_tokens']:,} tokens, vocabulary {meta['vocab_size']:,}, "
        f"n-grams {' / '.join(f'{n:,}' for n in meta['ngrams'])} in {time.perf_counter() - started:.1f} s")


@app.command()
def rank(
    k: int = typer.Option(20, "--k", "-k", min=1, help="Candidates per position."),
    model: Path = ModelOption,
    corpus: Optional[str] = typer.Option(None, help="Rank this text instead of the model's own corpus (a file, "
                                         "compressed or not, or - for standard input)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
    gt_first: bool = typer.Option(True, "--gt-first/--no-gt-first",
                                  help="Put the true next token first (its own partition)."),
    scores: bool = typer.Option(False, "--scores", help="Store each entry's score: the count of its order (count "
                                                         "teacher) or its natural-log probability (the others)."),
    min_order: int = typer.Option(1, "--min-order", min=1,
                                  help="Lowest backoff order listed (2 leaves out the unigram fill-ins)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Worker threads (default: all cores)."),
    arpa: Optional[Path] = typer.Option(None, help="Rank by this ARPA model's probabilities (any ARPA file, "
                                                   "e.g. from 'ngteach arpa' or lmplz): --teacher arpa:FILE."),
    teacher_spec: Optional[str] = typer.Option(None, "--teacher",
                                               help="The teacher, if not the model's counts: count:DIR (another "
                                                    "model directory of the same vocabulary), cloze:DIR (two-sided), "
                                                    "infini:DIR (unbounded order), arpa:FILE, "
                                                    "born-again:RUN (a student run), hf-causal:DIR or hf-masked:DIR "
                                                    "(a local Hugging Face model; needs the hf extra)."),
    device: Optional[str] = typer.Option(None, help="A neural teacher: cpu, cuda or cuda:N (default: cuda if "
                                         "there is one)."),
) -> None:
    """Write the top-k ranks of every position of the corpus (a ranks file, see FORMATS.md).
    The count teacher lists entries by backoff level; an ARPA or neural teacher orders them
    by probability, and --scores stores natural-log probabilities (what --loss kl needs).

    \b
    Examples:
      ngteach rank --k 20 > ranks.bin
      ngteach rank --teacher arpa:model.arpa --scores -o kn.bin
      ngteach rank --corpus other.txt -o other.bin
    """
    if output is None and sys.stdout.isatty():
        raise NgteachError("refusing to write a binary ranks file to a terminal; redirect it (> ranks.bin) "
                           "or use -o FILE")
    if output is not None:
        _check_output(output)
    if teacher_spec is not None and arpa is not None:
        raise NgteachError("give --arpa FILE or --teacher SPEC, not both (--arpa FILE is --teacher arpa:FILE)")
    started = time.perf_counter()
    vocabulary = NgramModel(model)
    k = min(k, len(vocabulary.vocab))  # longer rows would hold only padding; the last line says which k
    target = output if output is not None else sys.stdout.buffer
    with progress_bars() as bars:
        if corpus is None:
            stream, source = vocabulary.tokens(), vocabulary.meta["corpus"]["path"]
        else:
            spool_dir = Path(tempfile.gettempdir()) if output is None else output.resolve().parent
            with corpus_argument(corpus, None, spool_dir) as (path, source):
                stream = vocabulary.tokenizer.encode_file(path, bars.add(f"read {Path(source).name}",
                                                                         _text_size(path), "bytes"))
        teacher = _teacher(teacher_spec or (arpa and f"arpa:{arpa}"), vocabulary, k, bars, device)
        ranked = bars.add("rank", len(stream), "positions")
        write_ranks(teacher, stream, target, k, gt_first, scores, source, threads, ranked, min_order)
    seconds = time.perf_counter() - started
    say(f"ranked {len(stream):,} positions (k={k}) in {seconds:.1f} s "
        f"({len(stream) / max(seconds, 1e-9):,.0f} positions/s)")


def _teacher(spec: Optional[str], model: NgramModel, k: int, bars, device: Optional[str]):
    """The teacher of ``spec`` for ``model``'s vocabulary (its counts without one), an ARPA
    file's reading shown as it goes, a neural one on ``device``."""
    if spec is None:
        return CountTeacher(model)
    kind, path = parse_teacher_spec(spec)
    read = bars.add(f"read {path.name}", _file_size(path), "bytes") if kind == "arpa" else None
    if kind in NGRAM_KINDS:
        return load_teacher(spec, model, k, on_bytes=read)
    from student.train import torch_device

    return load_teacher(spec, model, k, device=torch_device(device))


@app.command()
def arpa(
    output: Path = typer.Option(Path("model.arpa"), "--output", "-o", help="ARPA file to write."),
    model: Path = ModelOption,
    order: Optional[int] = typer.Option(None, "--order", "-n", min=1, max=MAX_ORDER,
                                        help="Order of the estimate (default: the model's)."),
    discount_fallback: bool = typer.Option(False, "--discount-fallback",
                                           help="Where discounts cannot be estimated, use lmplz's fallback "
                                                "D1 0.5, D2 1, D3+ 1.5 (with a warning) instead of failing."),
    prune: Optional[str] = typer.Option(None, "--prune", metavar="T1,T2,...",
                                        help="lmplz's --prune: leave out the m-grams seen at most Tm times "
                                             "(non-decreasing; the last applies to the orders above), e.g. 0,0,1 "
                                             "prunes singleton trigrams and above."),
) -> None:
    """Estimate an interpolated modified Kneser-Ney model of the model's corpus, as KenLM's
    lmplz does (sentences per line), and write it as an ARPA file.

    \b
    Examples:
      ngteach arpa -o model.arpa --order 4
      ngteach arpa -o pruned.arpa --prune 0,0,1      # lmplz -o 4 --prune 0 0 1
    """
    _check_output(output)
    thresholds = _thresholds(prune)
    started = time.perf_counter()
    teacher = NgramModel(model)
    order = order or teacher.order
    with progress_bars() as bars, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiscountFallbackWarning)
        estimated = bars.add("estimate", order + 2, "stages")
        tables = estimate_kneser_ney(teacher, order, LMPLZ_FALLBACK if discount_fallback else None,
                                     lambda stage: estimated(1), thresholds)
        write_arpa(tables, output)
    for warning in caught:
        say(f"ngteach: warning: {warning.message}")
    say(f"wrote {output}: order {order}, n-grams {' / '.join(f'{len(o.ngrams):,}' for o in tables.orders)} "
        f"in {time.perf_counter() - started:.1f} s")


def _thresholds(prune: Optional[str]) -> Optional[list[int]]:
    """``--prune 0,0,1`` (or "0 0 1", as lmplz takes them) as integers."""
    if prune is None:
        return None
    try:
        return [int(t) for t in prune.replace(",", " ").split()]
    except ValueError:
        raise NgteachError(f"--prune takes whole numbers, one per order (e.g. 0,0,1), not {prune!r}") from None


@app.command()
def query(
    context: str = typer.Argument(..., metavar="CONTEXT", help="The words before the position to rank, or "
                                  "'LEFT _ RIGHT': the cloze teacher ranks the gap between them."),
    k: int = typer.Option(10, "--k", "-k", min=1, help="How many continuations to show."),
    model: Path = ModelOption,
    arpa: Optional[Path] = typer.Option(None, help="Show this ARPA model's most probable continuations instead."),
    bos: bool = typer.Option(False, "--bos", help="With --arpa: the context starts a line (follows <s>)."),
    infini: bool = typer.Option(False, "--infini", help="Show what the unbounded-order teacher ranks: the words "
                                                        "after every match of the context, however long."),
) -> None:
    """Show what the teacher ranks after CONTEXT, with each entry's order and count (or,
    with --arpa, its log10 probability); with a gap, '_', what the two-sided (cloze)
    teacher ranks between its neighbours; with --infini, what the unbounded-order teacher
    ranks (an entry of order L + 1 follows a match of the last L words).

    \b
    Examples:
      ngteach query "raise an" --k 5
      ngteach query "the" --arpa model.arpa --bos
      ngteach query "raise an _ if" --k 5
      ngteach query "is raised when an" --infini
    """
    if bos and arpa is None:
        raise NgteachError("--bos is for --arpa (the count teacher's contexts never follow <s>)")
    if infini and arpa is not None:
        raise NgteachError("give --arpa FILE or --infini, not both")
    teacher = NgramModel(model)
    if context.split().count(GAP) == 1 and arpa is None and not infini:
        _query_gap(teacher, context, k)
        return
    if infini:
        _query_infini(teacher, context, k)
        return
    ids = teacher.tokenizer.encode_text(context)
    shown = " ".join(teacher.vocab.tokens[i] for i in ids)
    if arpa is None:
        print(f"after '{shown}' (order {teacher.order} model):")
        print(f"{'rank':>4}  {'order':>5}  {'count':>9}  word")
        for place, candidate in enumerate(continuations(teacher, context, k), start=1):
            print(f"{place:>4}  {candidate.order:>5}  {candidate.count:>9,}  {candidate.word}")
        return
    scorer = load_arpa_teacher(arpa, teacher, k)
    print(f"after '{shown}' ({arpa.name}, order {scorer.order}{', at a line start' if bos else ''}):")
    print(f"{'rank':>4}  {'order':>5}  {'log10 p':>9}  word")
    for place, candidate in enumerate(arpa_continuations(teacher, scorer, context, k, bos), start=1):
        print(f"{place:>4}  {candidate.order:>5}  {candidate.logprob / math.log(10):>9.4f}  {candidate.word}")


GAP = "_"  # the position a cloze query ranks


def _query_gap(model: NgramModel, context: str, k: int) -> None:
    """What the cloze teacher ranks between the words before and after the gap."""
    left, right = (model.tokenizer.encode_text(side) for side in context.split(GAP, 1))
    stream = np.concatenate([left, [0], right]).astype(np.int64)
    rows = teacher_rows(ClozeTeacher(model), stream, [len(left)], min(k, len(model.vocab)), gt_first=False)
    shown = " ".join([*(model.vocab.tokens[i] for i in left), GAP, *(model.vocab.tokens[i] for i in right)])
    _print_row(f"between '{shown}' (order {model.order} model, two-sided):", rows, model)


def _query_infini(model: NgramModel, context: str, k: int) -> None:
    """What the unbounded-order teacher ranks after the context (the corpus's positions
    matching its end, however far back)."""
    ids = model.tokenizer.encode_text(context)
    stream = np.append(ids, 0).astype(np.int64)
    rows = teacher_rows(InfiniTeacher(model), stream, [len(ids)], min(k, len(model.vocab)), gt_first=False)
    _print_row(f"after '{' '.join(model.vocab.tokens[i] for i in ids)}' (unbounded order):", rows, model)


def _print_row(title: str, rows, model: NgramModel) -> None:
    """The first row of ``rows`` (entries with their order and count), under ``title``."""
    print(title)
    print(f"{'rank':>4}  {'order':>5}  {'count':>9}  word")
    for place, (word, order, count) in enumerate(zip(rows.ids[0], rows.orders[0], rows.scores[0]), start=1):
        if order:
            print(f"{place:>4}  {order:>5}  {count:>9,}  {model.vocab.tokens[word]}")


@app.command()
def merge(
    shards: list[Path] = typer.Argument(..., metavar="MODEL...", help="Model directories of consecutive pieces of "
                                        "one corpus, in corpus order."),
    out: Path = typer.Option(..., "--out", "-o", help="The merged model directory to write."),
) -> None:
    """Merge model directories built from shards of one corpus (cut at line ends) into the
    model that building the whole corpus gives.

    \b
    Examples:
      split -n l/4 corpus.txt shard.        # four pieces, cut at line ends
      for s in shard.*; do ngteach build $s -o $s.model; done   # one per machine
      ngteach merge shard.*.model --out model
    """
    started = time.perf_counter()
    with progress_bars() as bars:
        merged = bars.add("merge", NgramModel(shards[0]).order if shards else 0, "orders")
        merge_models(shards, out, on_order=lambda m: merged(1))
    meta = NgramModel(out).meta
    say(f"merged {len(shards)} shards into {out}: {meta['n_tokens']:,} tokens, vocabulary {meta['vocab_size']:,}, "
        f"n-grams {' / '.join(f'{n:,}' for n in meta['ngrams'])} in {time.perf_counter() - started:.1f} s")


@app.command()
def info(path: Path = typer.Argument(..., metavar="PATH", help="A model directory or a ranks file.")) -> None:
    """Validate and describe a model directory or a ranks file.

    \b
    Example:
      ngteach info ranks.bin
    """
    if path.is_dir():
        _describe_model(NgramModel(path))
    elif path.exists():
        _describe_ranks(RankFile(path))
    else:
        raise NgteachError(f"{path}: no such file or directory")


def _text_size(path: Path) -> int | None:
    """The bytes a progress bar will see of a corpus file (unknown if compressed)."""
    return None if path.suffix.lower() in DECOMPRESS else path.stat().st_size


def _file_size(path: Path) -> int:
    if path.is_dir():
        raise NgteachError(f"{path}: is a directory, not an ARPA file")
    if not path.is_file():
        raise NgteachError(f"{path}: no such ARPA file")
    return path.stat().st_size


def _check_output(output: Path) -> None:
    """Refuse an --output that cannot become a file, before any work is done."""
    if output.is_dir():
        raise NgteachError(f"{output}: is a directory; --output needs a file name")
    if not output.parent.is_dir():
        raise NgteachError(f"{output.parent}: no such directory for --output")


def _describe_model(model: NgramModel) -> None:
    meta = model.meta
    model.tokens()
    print(f"ngteach model {model.directory} (format {meta['format_version']}, ngteach {meta['tool_version']})")
    print(f"  corpus     {meta['corpus']['path']} ({meta['corpus']['bytes']:,} bytes, "
          f"sha256 {meta['corpus']['sha256'][:16]}...)")
    print(f"  tokens     {meta['n_tokens']:,}")
    print(f"  tokenizer  {json.dumps(meta['tokenizer'])}")
    print(f"  vocabulary {meta['vocab_size']:,}")
    for m, n in enumerate(meta["ngrams"], start=1):
        print(f"  {m}-grams    {n:,}")


def _describe_ranks(ranks: RankFile) -> None:
    header = ranks.header
    ranks.check_ids()
    print(f"ngteach ranks file {ranks.path} (format {header['format_version']})")
    print(f"  positions  {header['n_positions']:,} x k={header['k']} ({header['id_dtype']} ids, pad "
          f"{header['pad_id']})")
    print(f"  teacher    {json.dumps(header['teacher'])}")
    declared = header["teacher"].get("partition")
    how = "as the teacher declares" if declared else "not declared: made before teachers declared partitions"
    print(f"  partition  {declared or 'order'} ({how})")
    print(f"  gt first   {header['gt_first']}")
    print(f"  scores     {json.dumps(header['scores'])}")
    leftover = ranks.leftover_mass()
    if leftover is not None:  # the smoothing that kl's tail and --smoothing teacher would give
        print(f"  leftover   probability outside the top k: mean {leftover['mean']:.3f}, median "
              f"{leftover['0.5']:.3f}, 90th percentile {leftover['0.9']:.3f}")
    print(f"  vocabulary {header['vocab_size']:,} (sha256 {header['vocab_sha256'][:16]}...)")
    print(f"  tokens     sha256 {header['tokens_sha256'][:16]}...")


training.register(app)


def _shown(text: str) -> str:
    """``text`` as it was typed: Python decodes bytes that are not UTF-8 as lone surrogates."""
    return repr(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def _check_utf8(name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise NgteachError(f"{_shown(name)} is not valid UTF-8") from None


def _command_line_error(error: Exception) -> tuple[str, int] | None:
    """(message, exit code) for typer's own errors (bad option values, unknown options).

    Typer raises click-style exceptions whose module moved between releases, so they are
    recognised by their interface rather than imported."""
    message, code = getattr(error, "format_message", None), getattr(error, "exit_code", None)
    if callable(message) and isinstance(code, int):
        return message(), code
    return None


def _name_metavars(command) -> None:
    """Show an option's value by its name in capitals (``--k K``, ``--model MODEL``), as
    argparse does, rather than by its type (``<int range>``)."""
    for sub in getattr(command, "commands", {}).values():
        _name_metavars(sub)
    for param in command.params:
        if param.param_type_name == "option" and not param.is_flag and param.metavar is None:
            param.metavar = param.name.upper()


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    _name_metavars(command)
    try:
        code = command.main(args=argv, prog_name="ngteach", standalone_mode=False)
    except NgteachError as e:
        say(f"ngteach: error: {e}")
        sys.exit(1)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except UnicodeEncodeError as e:  # an argument of bytes that are not UTF-8, where text is needed
        say(f"ngteach: error: {_shown(e.object)} is not valid UTF-8")
        sys.exit(1)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        say(f"ngteach: error: {where}{e.strerror or e}")
        sys.exit(1)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:
        known = _command_line_error(e)
        if known is None:
            if type(e).__name__ != "Abort":
                raise
            known = ("", 130)
        message, code = known
        if type(e).__name__ == "NoArgsIsHelpError":
            say(message)
        elif message:
            say(f"ngteach: error: {message}")
    if code == 130:
        say("ngteach: interrupted")
    sys.exit(code if isinstance(code, int) else 0)
