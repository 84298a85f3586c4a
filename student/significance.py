"""Is one run's test perplexity really lower than another's? Paired tests over blocks.

Two runs evaluated on the same test tokens are compared token for token: both tests
resample or shuffle *blocks* of consecutive tokens jointly for the two runs, so what is
tested is the difference the models make on the same text, and the correlation between
neighbouring tokens stays inside a block instead of inflating the evidence. A block is
either ``block`` consecutive tokens (the last one shorter) or, given line offsets, a run
of whole lines holding at least ``block`` tokens. Perplexities are always
``exp(-sum of logprobs / number of tokens)``, so blocks of different sizes weigh by their
tokens. Both tests are seeded: the same inputs give the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from corpora import NgteachError
from corpora.files import json_count, read_json_object

SUMMARY = "summary.json"
LOGPROBS = "test_logprobs.npy"
LINES = "test_lines.npy"
OOV = "test_oov.npy"
SUMMARY_KEYS = ("test_ppl", "valid_ppl", "test_tokens", "test_tokens_sha256", "test_text")
METHODS = ("bootstrap", "permutation")
ALPHA = 0.05
BLOCK = 1000  # tokens per block (of whole lines) ...
MIN_BLOCKS = 50  # ... fewer on a test text too short for this many blocks
# Elements of one [resamples, blocks] draw held at a time; results do not depend on it.
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Comparison:
    """The outcome of a paired test of run A against run B on the same test tokens."""

    ppl_a: float
    ppl_b: float
    ci: tuple[float, float] | None  # 95% percentile interval of ppl_a - ppl_b (bootstrap only)
    p_value: float  # two-sided, for "no difference"
    method: str  # "bootstrap" or "permutation"
    blocks: int
    block: int  # tokens per block, or the least tokens per block of whole lines
    by_lines: bool
    resamples: int
    tokens: int  # test tokens compared
    oov: int | None = None  # out-of-vocabulary test tokens (None: not recorded)
    without_oov: bool = False  # whether those were left out of ``tokens``

    @property
    def difference(self) -> float:
        """ppl_a - ppl_b: negative when A is better."""
        return self.ppl_a - self.ppl_b


def check_run_directory(run: Path) -> None:
    """Refuse a path that is no directory: a missing one, or a file given in its place."""
    if not run.is_dir():
        raise NgteachError(f"{run}: {'not a' if run.exists() else 'no such'} run directory")


def load_run_logprobs(run_dir: str | Path) -> tuple[np.ndarray, dict]:
    """The test log-probabilities (float64) and the summary of a run directory, checked."""
    run = Path(run_dir)
    check_run_directory(run)
    summary = _read_summary(run)
    try:
        logprobs = np.load(run / LOGPROBS, allow_pickle=False)
    except FileNotFoundError:
        raise NgteachError(f"{run}: no {LOGPROBS} (the run has no test evaluation)") from None
    except (OSError, ValueError, EOFError) as e:
        raise NgteachError(f"{run}/{LOGPROBS}: unreadable or truncated ({e})") from None
    if logprobs.ndim != 1 or logprobs.dtype.kind != "f":
        raise NgteachError(f"{run}/{LOGPROBS}: expected a 1-d float array, found {logprobs.ndim}-d "
                           f"{logprobs.dtype}")
    if len(logprobs) != summary["test_tokens"]:
        raise NgteachError(f"{run}/{LOGPROBS}: {len(logprobs)} log-probabilities, {SUMMARY} says "
                           f"test_tokens {summary['test_tokens']}")
    bad = np.flatnonzero(~(np.isfinite(logprobs) & (logprobs <= 0)))
    if len(bad):
        raise NgteachError(f"{run}/{LOGPROBS}: {len(bad)} log-probabilities are not finite and <= 0 "
                           f"(the first is token {bad[0]}: {logprobs[bad[0]]})")
    return logprobs.astype(np.float64), summary


def _read_summary(run: Path) -> dict:
    summary = read_json_object(run / SUMMARY, f"{run}: not a finished run (no {SUMMARY})")
    missing = [key for key in SUMMARY_KEYS if summary.get(key) is None]
    if missing:
        raise NgteachError(f"{run}/{SUMMARY}: no test evaluation (no {', '.join(missing)})")
    tokens = summary["test_tokens"]
    if not json_count(tokens) or tokens < 1:
        raise NgteachError(f"{run}/{SUMMARY}: test_tokens must be a positive integer, not {tokens!r}")
    return summary


def load_run_lines(run_dir: str | Path, tokens: int) -> np.ndarray | None:
    """The run's line offsets into its test log-probabilities, or None if it saved none."""
    path = Path(run_dir) / LINES
    lines = _optional_array(path)
    if lines is not None:
        _check_lines(lines, tokens, str(path))
    return lines


def _optional_array(path: Path) -> np.ndarray | None:
    """The integer array saved at ``path`` as int64, None if there is none (older runs)."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise NgteachError(f"{path}: unreadable or truncated ({e})") from None
    return array if array.dtype.kind not in "iu" else array.astype(np.int64)


def _check_lines(lines: np.ndarray, tokens: int, name: str) -> None:
    if lines.ndim != 1 or lines.dtype.kind not in "iu" or len(lines) < 2:
        raise NgteachError(f"{name}: line offsets must be a 1-d integer array of at least 2 entries")
    if lines[0] != 0 or lines[-1] != tokens or (np.diff(lines) < 0).any():
        raise NgteachError(f"{name}: line offsets must rise from 0 to the {tokens} test tokens")


def load_run_oov(run_dir: str | Path, tokens: int) -> np.ndarray | None:
    """The positions of the run's out-of-vocabulary test tokens, or None if it saved none
    (runs made before they were recorded)."""
    path = Path(run_dir) / OOV
    oov = _optional_array(path)
    if oov is None:
        return None
    if (oov.ndim != 1 or oov.dtype.kind not in "iu" or (np.diff(oov) <= 0).any()
            or (len(oov) and not 0 <= oov[0] <= oov[-1] < tokens)):
        raise NgteachError(f"{path}: out-of-vocabulary positions must be a 1-d rising integer array within the "
                           f"{tokens} test tokens")
    return oov


def without_positions(logprobs: np.ndarray, lines: np.ndarray | None,
                      positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``logprobs`` without the tokens at ``positions`` (rising), and the line offsets
    moved back by the tokens left out before them."""
    keep = np.ones(len(logprobs), dtype=bool)
    keep[positions] = False
    return logprobs[keep], None if lines is None else lines - np.searchsorted(positions, lines)


def paired_bootstrap(logprobs_a: np.ndarray, logprobs_b: np.ndarray, block: int = 1000,
                     lines: np.ndarray | None = None, resamples: int = 10000, seed: int = 0) -> Comparison:
    """Paired block bootstrap of ppl_a - ppl_b: its 95% percentile interval and p-value.

    Each resample draws as many blocks as there are, with replacement, the same blocks for
    both runs. The p-value is the usual paired-bootstrap test (Berg-Kirkpatrick et al.,
    2012): the bootstrap differences, shifted by the observed one to centre them on the
    null, are at least as far from 0 as the observed difference in ``(count + 1) / (resamples + 1)``
    of the cases. Trust it only with dozens of blocks or more.
    """
    blocks = _Blocks(logprobs_a, logprobs_b, block, lines, resamples)
    observed = blocks.observed()
    rng = np.random.default_rng(seed)

    def draw(rows: int) -> np.ndarray:
        index = rng.integers(0, blocks.count, size=(rows, blocks.count))
        tokens = blocks.tokens[index].sum(1)
        return (np.exp(-blocks.sums_a[index].sum(1) / tokens)
                - np.exp(-blocks.sums_b[index].sum(1) / tokens))

    differences = np.concatenate(list(_chunks(draw, resamples, blocks.count)))
    extreme = _at_least_as_extreme(differences - observed, observed, max(blocks.perplexities()))
    low, high = np.percentile(differences, [2.5, 97.5])
    return blocks.comparison("bootstrap", (float(low), float(high)), (extreme + 1) / (resamples + 1))


def paired_permutation(logprobs_a: np.ndarray, logprobs_b: np.ndarray, block: int = 1000,
                       lines: np.ndarray | None = None, resamples: int = 10000, seed: int = 0) -> Comparison:
    """Approximate randomization test of ppl_a - ppl_b = 0 over the same blocks.

    Under the null the two runs are exchangeable, so each resample swaps A's and B's
    log-probabilities in every block with probability 1/2; the p-value is the share of
    resamples whose difference is at least as far from 0 as the observed one, as
    ``(count + 1) / (resamples + 1)``. It gives no confidence interval.
    """
    blocks = _Blocks(logprobs_a, logprobs_b, block, lines, resamples)
    observed = blocks.observed()
    rng = np.random.default_rng(seed)
    total_a, total_b = blocks.sums_a.sum(), blocks.sums_b.sum()
    gain = blocks.sums_b - blocks.sums_a  # what A gains (and B loses) when a block is swapped

    def draw(rows: int) -> np.ndarray:
        moved = (rng.random((rows, blocks.count)) < 0.5) @ gain
        return (np.exp(-(total_a + moved) / blocks.total_tokens)
                - np.exp(-(total_b - moved) / blocks.total_tokens))

    differences = np.concatenate(list(_chunks(draw, resamples, blocks.count)))
    extreme = _at_least_as_extreme(differences, observed, max(blocks.perplexities()))
    return blocks.comparison("permutation", None, (extreme + 1) / (resamples + 1))


class _Blocks:
    """The two runs' log-probability sums and token counts per block."""

    def __init__(self, logprobs_a: np.ndarray, logprobs_b: np.ndarray, block: int,
                 lines: np.ndarray | None, resamples: int):
        if len(logprobs_a) != len(logprobs_b):
            raise NgteachError(f"run A has {len(logprobs_a)} test tokens and run B {len(logprobs_b)}; "
                               "a paired test needs the same tokens")
        if len(logprobs_a) == 0:
            raise NgteachError("no test tokens to compare")
        if block < 1 or resamples < 1:
            raise NgteachError(f"block ({block}) and resamples ({resamples}) must be at least 1")
        total = len(logprobs_a)
        if lines is None:
            bounds = np.append(np.arange(0, total, block), total)
        else:
            lines = np.asarray(lines)
            _check_lines(lines, total, "line offsets")
            bounds = _line_blocks(lines.astype(np.int64), block)
        if len(bounds) < 3:
            raise NgteachError(f"all {total} test tokens fall in one block of {block}; a paired test needs "
                               "at least 2 blocks (use a smaller block)")
        starts = bounds[:-1]
        self.sums_a = np.add.reduceat(np.asarray(logprobs_a, dtype=np.float64), starts)
        self.sums_b = np.add.reduceat(np.asarray(logprobs_b, dtype=np.float64), starts)
        self.tokens = np.diff(bounds)
        self.count = len(starts)
        self.total_tokens = total
        self.block, self.by_lines, self.resamples = block, lines is not None, resamples

    def perplexities(self) -> tuple[float, float]:
        return (math.exp(-self.sums_a.sum() / self.total_tokens),
                math.exp(-self.sums_b.sum() / self.total_tokens))

    def observed(self) -> float:
        """ppl_a - ppl_b, summed from the blocks as every resample is, so ties stay exact."""
        ppl_a, ppl_b = self.perplexities()
        return ppl_a - ppl_b

    def comparison(self, method: str, ci: tuple[float, float] | None, p_value: float) -> Comparison:
        ppl_a, ppl_b = self.perplexities()
        return Comparison(ppl_a, ppl_b, ci, float(p_value), method, self.count, self.block, self.by_lines,
                          self.resamples, self.total_tokens)


def _line_blocks(lines: np.ndarray, block: int) -> np.ndarray:
    """Block bounds: each block ends at the first line start at least ``block`` tokens on."""
    bounds = [0]
    while bounds[-1] < lines[-1]:
        # lines[-1] is the end of the text, so the search never runs past the array.
        bounds.append(int(lines[min(np.searchsorted(lines, bounds[-1] + block), len(lines) - 1)]))
    return np.array(bounds, dtype=np.int64)


def _chunks(draw: Callable[[int], np.ndarray], resamples: int, blocks: int) -> Iterator[np.ndarray]:
    """``draw(rows)`` for successive chunks of rows, so memory stays bounded."""
    rows = max(1, CHUNK_ELEMENTS // blocks)
    for start in range(0, resamples, rows):
        yield draw(min(rows, resamples - start))


def _at_least_as_extreme(statistics: np.ndarray, observed: float, perplexity: float) -> int:
    """How many statistics are at least as far from 0 as the observed difference.

    A resample that reproduces the observed split of the text (e.g. swapping every block)
    counts, even when its sums were added in another order: the tolerance is a rounding
    error of ``perplexity`` (the larger one), far below any difference worth reporting.
    """
    tolerance = 1e-9 * perplexity
    return int((np.abs(statistics) >= abs(observed) - tolerance).sum())


def default_block(tokens: int) -> int:
    """Tokens per block: :data:`BLOCK`, or less on a text too short for :data:`MIN_BLOCKS` of them."""
    return max(1, min(BLOCK, tokens // MIN_BLOCKS))


def compare_runs(run_a: str | Path, run_b: str | Path, method: str = "bootstrap", block: int | None = None,
                 resamples: int = 10000, seed: int = 0, exclude_oov: bool = False) -> Comparison:
    """Paired test of two run directories' test perplexities (blocks of whole lines if
    saved; ``block`` tokens at least, by default :func:`default_block`), over every test
    token or, with ``exclude_oov``, over those in the vocabulary (KenLM's convention)."""
    if method not in METHODS:
        raise NgteachError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if seed < 0:
        raise NgteachError(f"--seed must be 0 or more, not {seed}")
    logprobs_a, summary_a = load_run_logprobs(run_a)
    logprobs_b, summary_b = load_run_logprobs(run_b)
    if summary_a["test_tokens_sha256"] != summary_b["test_tokens_sha256"]:
        text_a, text_b = summary_a["test_text"], summary_b["test_text"]
        why = (f"{text_a} vs {text_b}" if text_a != text_b else
               f"{text_a} gave different tokens: different vocabularies, or the text changed")
        raise NgteachError(f"{run_a} and {run_b} were evaluated on different test tokens ({why}; test_tokens_sha256 "
                           "differs); only runs on the same test tokens can be compared")
    lines = _shared_lines(run_a, run_b, len(logprobs_a))
    oov = _shared_oov(run_a, run_b, len(logprobs_a), exclude_oov)
    if exclude_oov:
        logprobs_a, lines = without_positions(logprobs_a, lines, oov)
        logprobs_b, _ = without_positions(logprobs_b, None, oov)
    test = paired_bootstrap if method == "bootstrap" else paired_permutation
    comparison = test(logprobs_a, logprobs_b, block=block or default_block(len(logprobs_a)), lines=lines,
                      resamples=resamples, seed=seed)
    return replace(comparison, oov=None if oov is None else len(oov), without_oov=exclude_oov)


def _shared_oov(run_a: str | Path, run_b: str | Path, tokens: int, required: bool) -> np.ndarray | None:
    """The out-of-vocabulary positions both runs saved (the same tokens, the same
    positions); None if one lacks them, refused then if they are ``required``."""
    oov_a, oov_b = load_run_oov(run_a, tokens), load_run_oov(run_b, tokens)
    if oov_a is not None and oov_b is not None and not np.array_equal(oov_a, oov_b):
        raise NgteachError(f"{run_a} and {run_b} mark different test tokens out-of-vocabulary ({OOV} differs)")
    if required and (oov_a is None or oov_b is None):
        lacking = run_a if oov_a is None else run_b
        raise NgteachError(f"{lacking}: no {OOV} (the run predates out-of-vocabulary records), so "
                           "--exclude-oov cannot leave those tokens out")
    return None if oov_a is None or oov_b is None else oov_a


def _shared_lines(run_a: str | Path, run_b: str | Path, tokens: int) -> np.ndarray | None:
    """The line offsets either run saved; the same tokens must have the same lines."""
    lines_a, lines_b = load_run_lines(run_a, tokens), load_run_lines(run_b, tokens)
    if lines_a is not None and lines_b is not None and not np.array_equal(lines_a, lines_b):
        raise NgteachError(f"{run_a} and {run_b} split the same test tokens into different lines "
                           f"({LINES} differs)")
    return lines_a if lines_a is not None else lines_b


def format_comparison(comparison: Comparison, name_a: str = "A", name_b: str = "B") -> str:
    """A few lines for a report: perplexities, difference and CI, p-value, method, verdict."""
    c = comparison
    if c.ci is None:
        interval = "no CI from a permutation test"
    else:
        interval = f"95% CI {c.ci[0]:+.3f} to {c.ci[1]:+.3f}"
    if c.by_lines:
        unit = f"blocks of whole lines ({c.tokens / c.blocks:,.0f} tokens on average)"
    else:
        unit = f"blocks of {c.block:,} tokens"
    test = "paired bootstrap" if c.method == "bootstrap" else "paired permutation test"
    p = f"p = {c.p_value:.2g}"
    if c.p_value >= ALPHA:
        verdict = f"no significant difference at {ALPHA} ({p})"
    else:
        better = name_a if c.difference < 0 else name_b
        verdict = f"{better} is better (lower perplexity), {p}"
    oov = []  # runs older than out-of-vocabulary records say nothing of them
    if c.oov is not None:
        total = c.tokens + c.oov if c.without_oov else c.tokens
        left = "left out" if c.without_oov else "included (--exclude-oov leaves them out)"
        oov = [f"out-of-vocabulary  {c.oov:,} of {total:,} test tokens ({c.oov / total:.1%}), {left}"]
    return "\n".join([
        f"perplexity  {name_a}: {c.ppl_a:.2f}  {name_b}: {c.ppl_b:.2f}  ({c.tokens:,} test tokens)",
        *oov,
        f"difference  {name_a} - {name_b}: {c.difference:+.3f}  ({interval})",
        f"p-value     {c.p_value:.2g}  ({test} over {c.blocks:,} {unit}, {c.resamples:,} resamples)",
        f"verdict     {verdict}",
    ])
