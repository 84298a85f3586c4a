"""``ngteach distill``, ``eval``, ``compare``, ``experiment`` and ``demo``.

Registered on the ``ngteach`` app by :mod:`ngteach.cli`. torch is imported only when one
of these commands runs, so the teacher's commands start fast. ``distill``'s options are
the run's settings (:func:`student.train.config_from_options` builds and checks the run
from them; a test checks that the two name the same settings).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corpora import NgteachError
from corpora.progress import say
from corpora.registry import resolve_corpus_arg


def distill(
    ctx: typer.Context,
    student: str = typer.Option("lstm", help="lstm or transformer."),
    size: str = typer.Option("small", help="tiny, small, medium or large."),
    loss: str = typer.Option("rank", help="rank (cross-entropy + Plackett-Luce terms), pl (the paper's "
                                          "Plackett-Luce over all k entries), kl, ce or ls (label smoothing)."),
    weight: Optional[float] = typer.Option(None, help="Weight of the teacher term (default per loss: rank 0.01, "
                                                      "pl 1, kl 0.5, ls 0.1)."),
    weight_schedule: str = typer.Option("constant", help="The teacher weight over training: constant, "
                                        "linear:EPOCHS or linear-tokens:TOKENS (down to 0 over that span), or "
                                        "plateau (0 from the first epoch validation does not improve)."),
    kl_tail: str = typer.Option("uniform", help="kl: the teacher's mass outside its top-k spread over the other "
                                "words (uniform) or dropped, the top-k renormalised (renormalise); or the "
                                "teacher's whole distribution (full: --teacher arpa:FILE)."),
    partition: Optional[str] = typer.Option(None, help="Rank partitions: order (backoff order), count (order and "
                                            "count; needs counts as scores), strict or none (default: what the "
                                            "teacher declares, order for counts, strict for ARPA and neural "
                                            "teachers)."),
    k: Optional[int] = typer.Option(None, "--k", help="Use the first k entries of each ranks row."),
    min_order: int = typer.Option(1, help="Leave out teacher entries found below this backoff order."),
    smoothing: Optional[str] = typer.Option(None, help="Label smoothing of the cross-entropy term of rank, pl and "
                                            "kl: a weight, or teacher (the teacher's probability outside its "
                                            "top-k at each position; needs its log-probabilities). Default per "
                                            "loss: rank 0.1, pl and kl 0."),
    model: str = typer.Option("ngteach-model", "--model", "-m", help="The model directory: the vocabulary, and "
                              "the training text unless --train gives one."),
    ranks: Optional[str] = typer.Option(None, help="The ranks file of the training text (default ranks.bin)."),
    teacher: Optional[str] = typer.Option(None, help="Rank each batch with this teacher instead of reading a "
                                          "ranks file: count:DIR (a model directory of the same vocabulary) or "
                                          "arpa:FILE. Neural teachers rank to a file only (ngteach rank "
                                          "--teacher)."),
    train: Optional[str] = typer.Option(None, help="Train on this text (a file or a named split) in the model's "
                                        "vocabulary, instead of the model's own corpus."),
    valid: Optional[str] = typer.Option(None, help="Validation text, a file or a named split such as "
                                                   "python-docs:valid (default: the tail of the training text)."),
    valid_fraction: float = typer.Option(0.1, help="Without --valid: the share of the training text held out "
                                         "at its end for validation."),
    test: Optional[str] = typer.Option(None, help="Test text (a file or a named split), evaluated with the "
                                                  "best checkpoint."),
    data_dir: Optional[Path] = typer.Option(None, help="Local mirror of named corpora (NAME/SPLIT.txt)."),
    out: Optional[str] = typer.Option(None, help="Run directory (default runs/STUDENT-SIZE-LOSS-sSEED)."),
    layers: Optional[int] = typer.Option(None, help="Override the size's number of layers."),
    width: Optional[int] = typer.Option(None, help="Override the hidden size / model dimension."),
    embedding: Optional[int] = typer.Option(None, help="Override the LSTM embedding size."),
    heads: Optional[int] = typer.Option(None, help="Override the transformer's attention heads."),
    inner: Optional[int] = typer.Option(None, help="Override the transformer's feed-forward size."),
    window: Optional[int] = typer.Option(None, help="BPTT length (LSTM) or context window (transformer)."),
    memory: Optional[int] = typer.Option(None, help="Transformer-XL-like memory of the previous segment."),
    dropout: Optional[float] = typer.Option(None, help="Override the output dropout."),
    dropout_embedding: Optional[float] = typer.Option(None, help="Override the embedding dropout."),
    tie_weights: Optional[bool] = typer.Option(None, "--tie-weights/--no-tie-weights",
                                               help="Share the embedding and the output layer (the sizes' default)."),
    optimizer: str = typer.Option("adamw", help="adamw, sgd or asgd."),
    lr: Optional[float] = typer.Option(None, help="Learning rate (default 2e-3 adamw, 20 sgd/asgd)."),
    weight_decay: float = typer.Option(0.01, help="The optimizer's weight decay."),
    schedule: str = typer.Option("plateau", help="plateau (lr / 4 when valid stalls), cosine or constant."),
    batch_size: int = typer.Option(20, help="Columns (LSTM) or windows (transformer) per batch."),
    clip: float = typer.Option(0.25, help="Gradient norm clipping."),
    epochs: int = typer.Option(40, help="Most epochs."),
    max_tokens: Optional[int] = typer.Option(None, help="Stop after this many training tokens."),
    max_time: Optional[float] = typer.Option(None, help="Stop after this many seconds."),
    patience: int = typer.Option(3, help="Epochs without a better validation perplexity before stopping."),
    min_improvement: float = typer.Option(0.001, help="Relative drop in validation perplexity that counts as better."),
    checkpoint_every: int = typer.Option(200, help="Batches between mid-epoch checkpoints (0: epoch ends only)."),
    eval_columns: int = typer.Option(10, help="Parts of an evaluation text read side by side, each from a fresh "
                                     "state."),
    seed: int = typer.Option(0, help="Random seed (same seed, same run, bit for bit on a CPU)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N (default: cuda if there is one)."),
    precision: str = typer.Option("bf16", help="On a GPU: bf16 (autocast) or fp32; the CPU computes in fp32."),
    resume: Optional[Path] = typer.Option(None, help="Continue the interrupted run in this directory."),
) -> None:
    """Train a student language model from the teacher's ranks.

    \b
    Examples:
      ngteach distill --student lstm --test python-docs:test
      ngteach distill --loss kl --teacher arpa:model.arpa --smoothing 0.1
      ngteach distill --resume runs/lstm-small-rank-s0
    """
    from student import train

    if resume is not None:
        _only_resume(ctx)
        config = train.RunConfig.load(resume / "config.json")
        config.out = str(resume)
    else:
        config = run_config(ctx.params)
        if Path(config.out).exists() and any(Path(config.out).iterdir()):
            raise NgteachError(f"{config.out}: the run directory exists; use --resume {config.out} or another --out")
    from corpora.progress import progress_bars

    with progress_bars() as bars:
        summary = train.run(config, resume=resume is not None, log=say,
                            progress=lambda name, total: bars.add(name, total, "batches"))
    test_part = f", test ppl {summary['test_ppl']:.2f}" if summary.get("test_ppl") else ""
    say(f"done: {config.out}: valid ppl {summary['valid_ppl']:.2f}{test_part} "
        f"(best epoch {summary['best_epoch']}, {summary['tokens_per_s']:,.0f} tokens/s)")


def run_config(params: dict):
    """The run of distill's options (``ctx.params``): named splits read as files, the
    smoothing parsed, the default run directory filled in."""
    from student.train import config_from_options

    options = {name: value for name, value in params.items() if name not in ("data_dir", "resume")}
    for text in ("train", "valid", "test"):
        options[text] = _text(options[text], params["data_dir"])
    options["smoothing"] = None if options["smoothing"] is None else _smoothing(options["smoothing"])
    options["out"] = options["out"] or str(Path("runs") / f"{params['student']}-{params['size']}-{params['loss']}-"
                                                          f"s{params['seed']}")
    return config_from_options(options)


def _smoothing(value: str) -> float | str:
    """--smoothing's weight, or ``teacher``."""
    from student.losses import TEACHER_SMOOTHING

    if value == TEACHER_SMOOTHING:
        return value
    try:
        return float(value)
    except ValueError:
        raise NgteachError(f"--smoothing must be a number or {TEACHER_SMOOTHING}, not {value!r}") from None


def _only_resume(ctx: typer.Context) -> None:
    """--resume continues a run as it was set up: a setting given beside it would be ignored."""
    given = [name for name in ctx.params if name != "resume" and ctx.get_parameter_source(name).name != "DEFAULT"]
    if given:
        raise NgteachError(f"--resume takes no other option (the run's config.json holds its settings), "
                           f"not --{given[0].replace('_', '-')}")


def evaluate(model: Path = typer.Argument(..., metavar="MODEL", help="A run directory (a student), a model "
                                          "directory (its Kneser-Ney estimate) or an ARPA file."),
             text: str = typer.Argument(..., metavar="TEXT", help="Text to evaluate on: a file or a named split."),
             data_dir: Optional[Path] = typer.Option(None, help="Local mirror of named corpora (NAME/SPLIT.txt)."),
             discount_fallback: bool = typer.Option(False, "--discount-fallback",
                                                    help="A model directory: as 'ngteach arpa --discount-fallback'."),
             device: str = typer.Option("cpu", help="A student run: cpu, cuda or cuda:N.")
             ) -> None:
    """Print the perplexity of MODEL on TEXT, with and without its out-of-vocabulary tokens:
    a student run's best checkpoint, or an N-gram model as KenLM's query scores it (each
    line after <s>, with its </s>; an unknown word scored as <unk> and counted as OOV).

    \b
    Examples:
      ngteach eval runs/lstm-small-rank-s0 python-docs:test
      ngteach eval model.arpa test.txt
    """
    from student import train
    from student.model import perplexity

    logprobs, tokens, unk = _scored(model, _text(text, data_dir), discount_fallback, device)
    print(f"{text}: perplexity {perplexity(train.mean_nll(logprobs)):.2f} over {len(logprobs):,} tokens")
    report, *warning = train.describe_oov(train.oov_figures("text", logprobs, tokens, unk), "text")
    print(report)
    for line in warning:
        say(line)


def generate(run: Path = typer.Argument(..., metavar="RUN", help="A run directory."),
             prompt: str = typer.Option("", help="The text to continue (tokenized like the corpus)."),
             length: int = typer.Option(50, min=0, help="Tokens to draw."),
             temperature: float = typer.Option(1.0, help="Divide the logits by this (below 1: more likely words)."),
             top_k: int = typer.Option(0, min=0, help="Draw among the k most probable words only (0: all)."),
             seed: int = typer.Option(0, min=0, help="Random seed (same seed, same text)."),
             ) -> None:
    """Continue PROMPT with text drawn from RUN's best checkpoint, a token at a time; each
    <eos> is a line end.

    \b
    Example:
      ngteach generate runs/lstm-small-rank-s0 --prompt "The history of" --top-k 40 --seed 1
    """
    from student import train
    from student.generate import sample

    config = train.RunConfig.load(run / "config.json")
    vocabulary = train.run_model(config, run)
    student = train.load_student(run, config, len(vocabulary.vocab))
    prompt_ids = [int(i) for i in vocabulary.tokenizer.encode_text(prompt)]
    drawn = sample(student, config.student, prompt_ids, length, vocabulary.vocab.eos_id, temperature, top_k, seed)
    words = [vocabulary.vocab.tokens[i] for i in prompt_ids + drawn]
    print(" ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n").rstrip("\n"))


def export(run: Path = typer.Argument(..., metavar="RUN", help="A run directory of a Transformer student."),
           out: Path = typer.Option(..., "--out", "-o", help="The Hugging Face model folder to write."),
           ) -> None:
    """Write RUN's best Transformer student as a Hugging Face model folder (GPT-NeoX, with
    a word-level tokenizer) that transformers.AutoModelForCausalLM loads, giving the same
    log-probabilities.

    \b
    Example:
      ngteach export runs/transformer-small-s0 --out hf-student
      python -c "import transformers; transformers.AutoModelForCausalLM.from_pretrained('hf-student')"
    """
    from student.export import export_hf

    say(f"exported {export_hf(run, out)} (GPT-NeoX)")


def _scored(model: Path, text: str, discount_fallback: bool, device: str):
    """(log-probabilities, token ids, <unk> id) of ``text`` under a student run, a model
    directory's Kneser-Ney estimate or an ARPA file."""
    from corpora import WordTokenizer
    from ngram_teacher import ArpaTeacher, NgramModel
    from ngram_teacher.arpa import read_arpa
    from ngram_teacher.arpa_rank import arpa_vocabulary, token_logprobs
    from ngram_teacher.kneser_ney import LMPLZ_FALLBACK, estimate_kneser_ney
    from student import train

    if not model.exists():
        raise NgteachError(f"{model}: no such run directory, model directory or ARPA file")
    if (model / "config.json").is_file():
        return train.evaluate_text(model, text, device)
    if model.is_dir():
        if not (model / "meta.json").is_file():
            raise NgteachError(f"{model}: neither a run directory (config.json) nor a model directory (meta.json)")
        counts = NgramModel(model)
        tables = estimate_kneser_ney(counts, counts.order, LMPLZ_FALLBACK if discount_fallback else None)
        vocabulary, tokenizer = counts.vocab, counts.tokenizer
    else:
        tables = read_arpa(model)
        vocabulary = arpa_vocabulary(tables)
        tokenizer = WordTokenizer(vocabulary)
    tokens = tokenizer.encode_file(text)
    return token_logprobs(ArpaTeacher(tables, vocabulary, 1), tokens), tokens, vocabulary.unk_id


def _text(spec: Optional[str], data_dir: Optional[Path]) -> Optional[str]:
    """A text file as given, or the file of a named split such as ``python-docs:test``."""
    return spec if spec is None or Path(spec).exists() else str(resolve_corpus_arg(spec, data_dir))


def compare(run_a: Path = typer.Argument(..., metavar="RUN_A", help="First run directory."),
            run_b: Path = typer.Argument(..., metavar="RUN_B", help="Second run directory."),
            method: str = typer.Option("bootstrap", help="bootstrap (paired, over blocks) or permutation."),
            block: Optional[int] = typer.Option(None, min=1, help="Least tokens per resampled block of whole "
                                                "lines (default 1000, or 1/50 of a shorter test text)."),
            resamples: int = typer.Option(10000, min=100, help="Bootstrap resamples or permutations."),
            seed: int = typer.Option(0, help="Seed of the resampling (same seed, same p-value)."),
            exclude_oov: bool = typer.Option(False, "--exclude-oov",
                                             help="Leave the out-of-vocabulary (<unk>) test tokens out, as "
                                                  "KenLM's perplexity without OOVs does.")) -> None:
    """Compare two runs on the same test tokens: perplexities, difference, 95% CI, p-value.

    \b
    Example:
      ngteach compare runs/lstm-small-ce-s0 runs/lstm-small-rank-s0 --exclude-oov
    """
    from student.significance import compare_runs, format_comparison

    comparison = compare_runs(run_a, run_b, method=method, block=block, resamples=resamples, seed=seed,
                              exclude_oov=exclude_oov)
    print(format_comparison(comparison, str(run_a), str(run_b)))


def experiment(spec: Path = typer.Argument(..., metavar="SPEC", help="The experiment spec (TOML; see experiments/)."),
               out: Optional[Path] = typer.Option(None, help="Output folder (default runs/NAME)."),
               jobs: int = typer.Option(1, min=1, help="Runs at a time."),
               threads: int = typer.Option(1, min=1, help="Torch threads per run; a run's numbers are the same "
                                                          "for the same threads, whatever --jobs is."),
               data_dir: Optional[Path] = typer.Option(None, help="Local mirror of named corpora (NAME/SPLIT.txt)."),
               results_only: bool = typer.Option(False, help="Only write the results of the runs done so far."),
               archive: Optional[Path] = typer.Option(
                   None, help="Then copy the results and every finished run's record (all but checkpoints) "
                              "into this folder, from which --results-only writes the same results.")
               ) -> None:
    """Run a grid of corpus x teacher x loss x seed (resumable) and write results.csv,
    results.md and plots.

    \b
    Example:
      ngteach experiment experiments/wt2-mini.toml --jobs 2
    """
    from student.spec import load_spec

    _run_grid(load_spec(spec), out, jobs, threads, data_dir, results_only, archive)


def demo(out: Path = typer.Option(Path("runs/demo"), help="Output folder."),
         jobs: int = typer.Option(2, min=1, help="Runs at a time.")) -> None:
    """A small version of the paper's comparison on the built-in python-docs corpus
    (tiny LSTMs, two seeds: a few minutes on two cores); prints the results table.

    \b
    Example:
      ngteach demo --jobs 2
    """
    from student.spec import demo_spec

    _run_grid(demo_spec(), out, jobs, 1, None, False)
    print((out / "results.md").read_text(encoding="utf-8"))


def _run_grid(spec, out: Optional[Path], jobs: int, threads: int, data_dir: Optional[Path],
              results_only: bool, archive: Optional[Path] = None) -> None:
    from corpora.progress import progress_bars

    from student.experiment import archive_experiment, check_archive, plan_runs, run_experiment, write_results

    out = out or Path("runs") / spec.name
    if out.exists() and not out.is_dir():
        raise NgteachError(f"{out}: the output folder is a file")
    if archive is not None:
        check_archive(out, archive)
    if results_only:
        if not out.exists():
            raise NgteachError(f"{out}: no such experiment folder")
        if not (out / "experiment.json").is_file():
            raise NgteachError(f"{out}: not an experiment folder (no experiment.json)")
        outcome = {"files": write_results(spec, plan_runs(spec, out), out), "failed": []}
    else:
        with progress_bars() as bars:
            outcome = run_experiment(spec, out, jobs, threads, data_dir, log=say,
                                     progress=lambda name, total: bars.add(name, total, "runs"))
    say(f"wrote {', '.join(str(f) for f in outcome['files'])}")
    if archive is not None:
        say(f"archived {archive_experiment(spec, out, archive)} finished run(s) and the results in {archive}")
    if outcome["failed"]:
        first = outcome["failed"][0]
        raise NgteachError(f"{len(outcome['failed'])} run(s) failed or could not run, the first {first.name} "
                           f"(see {first.log}); rerun to retry")


def register(app: typer.Typer) -> None:
    app.command()(distill)
    app.command("eval")(evaluate)
    app.command()(generate)
    app.command()(export)
    app.command()(compare)
    app.command()(experiment)
    app.command()(demo)
