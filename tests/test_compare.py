"""student.significance against hand-worked numbers, plain loops and full enumerations."""
from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from corpora import NgteachError
from student import significance
from student.significance import (Comparison, compare_runs, format_comparison, load_run_logprobs,
                                  paired_bootstrap, paired_permutation)

TESTS = {"bootstrap": paired_bootstrap, "permutation": paired_permutation}


def ppl(sums: list[float], tokens: list[int]) -> float:
    """Perplexity of the tokens of some blocks, from their sums and sizes."""
    return math.exp(-math.fsum(sums) / sum(tokens))


def block_sums(logprobs: np.ndarray, bounds: list[int]) -> list[float]:
    return [math.fsum(logprobs[start:end].tolist()) for start, end in zip(bounds, bounds[1:])]


def write_run(run: Path, logprobs, sha: str = "same", lines=None, **summary) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    logprobs = np.asarray(logprobs, dtype=np.float32)
    fields = {"test_ppl": float(np.exp(-logprobs.mean())), "valid_ppl": 1.0, "test_tokens": len(logprobs),
              "test_tokens_sha256": sha, "test_text": "test.txt"}
    (run / "summary.json").write_text(json.dumps({**fields, **summary}))
    np.save(run / "test_logprobs.npy", logprobs)
    if lines is not None:
        np.save(run / "test_lines.npy", np.asarray(lines, dtype=np.int64))
    return run


def noise(seed: int, tokens: int) -> np.ndarray:
    """Log-probabilities of a plausible model: a few nats per token."""
    return -0.2 - np.random.default_rng(seed).exponential(3.0, tokens)


# Seven tokens in blocks of 2: [-1 -1] [-2 -2] [-1 -3] [-2], and B a little better.
A7 = np.array([-1, -1, -2, -2, -1, -3, -2], dtype=np.float64)
B7 = np.array([-1, -1, -1, -1, -1, -1, -2], dtype=np.float64)


@pytest.mark.parametrize("method", TESTS)
def test_hand_worked_perplexities(method):
    c = TESTS[method](A7, B7, block=2, resamples=200)
    assert (c.blocks, c.tokens, c.block, c.by_lines, c.method) == (4, 7, 2, False, method)
    assert c.ppl_a == pytest.approx(math.exp(12 / 7), rel=1e-12)
    assert c.ppl_b == pytest.approx(math.exp(8 / 7), rel=1e-12)
    assert c.difference == pytest.approx(math.exp(12 / 7) - math.exp(8 / 7), rel=1e-12)


def test_hand_worked_bootstrap_of_two_blocks():
    # Blocks [-1 -1 -2] and [-2] for A, [-1 -1 -1] and [-3] for B. The four equally likely
    # resamples (1,1) (1,2) (2,1) (2,2) give differences e^(4/3) - e^1, e^(6/4) - e^(6/4) = 0
    # twice, and e^2 - e^3; the observed difference is 0. Every shifted resample is at least
    # as far from 0 as the observed, so p = 1, and the interval spans the extremes.
    a, b = np.array([-1.0, -1, -2, -2]), np.array([-1.0, -1, -1, -3])
    c = paired_bootstrap(a, b, block=3, resamples=4000)
    assert c.blocks == 2 and c.difference == pytest.approx(0, abs=1e-12) and c.p_value == 1
    assert c.ci[0] == pytest.approx(math.e**2 - math.e**3)
    assert c.ci[1] == pytest.approx(math.exp(4 / 3) - math.e)


def test_line_blocks_are_whole_lines_of_at_least_block_tokens():
    # Lines start at 0 2 3 7 8 12 13 20 (23 tokens). Blocks of >= 3 tokens end at the first
    # line start 3 tokens on: 0-3, 3-7, 7-12, 12-20, 20-23 (the last one short).
    logprobs = noise(1, 23)
    c = paired_bootstrap(logprobs, logprobs * 0.9, block=3, lines=[0, 2, 3, 7, 8, 12, 13, 20, 23],
                         resamples=10)
    assert (c.blocks, c.by_lines) == (5, True)
    # Empty lines (repeated offsets) are no blocks of their own; block 1 is one line each.
    assert paired_bootstrap(logprobs, logprobs, block=1, lines=[0, 0, 5, 5, 23], resamples=10).blocks == 2


def test_bootstrap_matches_a_plain_loop_over_the_same_draws():
    lines, bounds = [0, 2, 3, 7, 8, 12, 13, 20, 23], [0, 3, 7, 12, 20, 23]
    a, b = noise(2, 23), noise(3, 23)
    sums_a, sums_b = block_sums(a, bounds), block_sums(b, bounds)
    sizes = [end - start for start, end in zip(bounds, bounds[1:])]
    observed = ppl(sums_a, sizes) - ppl(sums_b, sizes)
    rng, differences = np.random.default_rng(7), []
    for _ in range(3000):
        index = rng.integers(0, 5, size=5).tolist()
        tokens = [sizes[i] for i in index]
        differences.append(ppl([sums_a[i] for i in index], tokens) - ppl([sums_b[i] for i in index], tokens))
    extreme = sum(abs(d - observed) >= abs(observed) for d in differences)
    cuts = statistics.quantiles(differences, n=40, method="inclusive")  # 2.5%, 5%, ..., 97.5%

    c = paired_bootstrap(a, b, block=3, lines=lines, resamples=3000, seed=7)
    assert c.difference == pytest.approx(observed, rel=1e-12)
    assert c.p_value == (extreme + 1) / 3001
    assert c.ci == pytest.approx((cuts[0], cuts[-1]), rel=1e-9)


@pytest.mark.parametrize("method", TESTS)
def test_chunking_does_not_change_the_numbers(method, monkeypatch):
    a, b = noise(4, 500), noise(5, 500)
    whole = TESTS[method](a, b, block=20, resamples=700, seed=3)
    monkeypatch.setattr(significance, "CHUNK_ELEMENTS", 7 * 25 + 3)  # 7 resamples at a time
    assert TESTS[method](a, b, block=20, resamples=700, seed=3) == whole
    assert TESTS[method](a, b, block=20, resamples=700, seed=4) != whole


def test_bootstrap_p_value_against_every_resample():
    # 3 blocks of 4, 2 and 5 tokens: the 27 ordered resamples are equally likely.
    a, b = noise(6, 11), noise(8, 11)
    bounds = [0, 4, 6, 11]
    sums_a, sums_b, sizes = block_sums(a, bounds), block_sums(b, bounds), [4, 2, 5]
    observed = ppl(sums_a, sizes) - ppl(sums_b, sizes)
    extreme = 0
    for index in itertools.product(range(3), repeat=3):
        tokens = [sizes[i] for i in index]
        d = ppl([sums_a[i] for i in index], tokens) - ppl([sums_b[i] for i in index], tokens)
        extreme += abs(d - observed) >= abs(observed)
    c = paired_bootstrap(a, b, lines=bounds, block=1, resamples=20000, seed=1)
    assert 0 < extreme < 27
    assert c.p_value == pytest.approx(extreme / 27, abs=0.015)  # 4 standard errors


def test_permutation_p_value_against_every_swap():
    # 4 blocks: the 16 swap patterns are equally likely; swapping none or all of them
    # reproduces the observed difference up to its sign, so both always count.
    a, b = noise(1, 10), noise(1001, 10)  # the all-swapped sums round differently
    bounds = [0, 3, 4, 8, 10]
    sums_a, sums_b, sizes = block_sums(a, bounds), block_sums(b, bounds), [3, 1, 4, 2]
    observed = ppl(sums_a, sizes) - ppl(sums_b, sizes)
    extreme = 0
    for swap in itertools.product([False, True], repeat=4):
        to_a = [sb if s else sa for s, sa, sb in zip(swap, sums_a, sums_b)]
        to_b = [sa if s else sb for s, sa, sb in zip(swap, sums_a, sums_b)]
        extreme += abs(ppl(to_a, sizes) - ppl(to_b, sizes)) >= abs(observed) * (1 - 1e-12)
    c = paired_permutation(a, b, lines=bounds, block=1, resamples=20000, seed=1)
    assert 2 <= extreme < 16
    assert c.p_value == pytest.approx(extreme / 16, abs=0.015)
    assert c.ci is None


@pytest.mark.parametrize("method", TESTS)
def test_identical_runs(method):
    a = noise(11, 1000)
    c = TESTS[method](a, a.copy(), block=50, resamples=500)
    assert c.difference == 0 and c.p_value == 1
    assert c.ci in (None, (0.0, 0.0))
    assert "no significant difference at 0.05 (p = 1)" in format_comparison(c)


@pytest.mark.parametrize("method", TESTS)
def test_clearly_better_run(method):
    a = noise(12, 20000)
    b = np.minimum(a + 0.1 + np.random.default_rng(13).normal(0, 0.05, a.shape), 0)
    c = TESTS[method](a, b, block=100, resamples=2000)
    assert c.difference > 0 and c.p_value < 0.01
    if method == "bootstrap":
        assert 0 < c.ci[0] < c.difference < c.ci[1]
    assert "verdict     B is better (lower perplexity), p = 0.0005" in format_comparison(c)
    assert "verdict     B is better" in format_comparison(c, "base", "B")
    flipped = TESTS[method](b, a, block=100, resamples=2000)
    assert flipped.difference == pytest.approx(-c.difference) and flipped.p_value < 0.01
    assert "new is better" in format_comparison(flipped, "new", "old")


@pytest.mark.parametrize("method", TESTS)
def test_null_pairs_are_rarely_significant(method):
    # A and B i.i.d. around the same mean: p should be roughly uniform, so about 5% of
    # the pairs below 0.05 and the median near 0.5.
    p_values = [TESTS[method](noise(1000 + pair, 2000), noise(2000 + pair, 2000), block=50,
                              resamples=500, seed=pair).p_value for pair in range(50)]
    assert sum(p < 0.05 for p in p_values) / 50 < 0.15
    assert statistics.median(p_values) > 0.25


def test_format_comparison_lines():
    c = Comparison(ppl_a=123.456, ppl_b=120.0, ci=(1.25, 5.5), p_value=0.0012, method="bootstrap",
                   blocks=246, block=1000, by_lines=False, resamples=10000, tokens=245569)
    assert format_comparison(c, "base", "rank").splitlines() == [
        "perplexity  base: 123.46  rank: 120.00  (245,569 test tokens)",
        "difference  base - rank: +3.456  (95% CI +1.250 to +5.500)",
        "p-value     0.0012  (paired bootstrap over 246 blocks of 1,000 tokens, 10,000 resamples)",
        "verdict     rank is better (lower perplexity), p = 0.0012",
    ]
    by_lines = Comparison(120.0, 123.456, None, 0.2, "permutation", 200, 1000, True, 5000, 245569)
    text = format_comparison(by_lines, "base", "rank")
    assert "(no CI from a permutation test)" in text
    assert "paired permutation test over 200 blocks of whole lines (1,228 tokens on average)" in text
    assert "verdict     no significant difference at 0.05 (p = 0.2)" in text


def test_compare_runs_reads_run_directories(tmp_path):
    a, b = noise(14, 300), noise(15, 300)
    lines = [0, 40, 90, 100, 180, 260, 300]
    run_a = write_run(tmp_path / "a", a, lines=lines)
    run_b = write_run(tmp_path / "b", b)  # a run without lines uses A's
    # Blocks of >= 50 tokens end at line starts 90, 180, 260 and the end, 300.
    c = compare_runs(run_a, run_b, block=50, resamples=300, seed=2)
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    assert c == paired_bootstrap(a32, b32, block=50, lines=lines, resamples=300, seed=2)
    assert c.by_lines and c.blocks == 4
    assert compare_runs(run_a, run_b, method="permutation", block=50, resamples=300) == \
        paired_permutation(a32, b32, block=50, lines=lines, resamples=300)
    logprobs, summary = load_run_logprobs(run_a)
    assert logprobs.dtype == np.float64 and np.array_equal(logprobs, a32) and summary["test_tokens"] == 300
    # by default a text this short gets blocks of 300 / 50 = 6 tokens at least, not 1,000
    assert compare_runs(run_a, run_b, resamples=300) == paired_bootstrap(a32, b32, block=6, lines=lines,
                                                                           resamples=300)


def one_line_error(match: str, call, *args, **kwargs) -> None:
    with pytest.raises(NgteachError, match=match) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)


def test_errors_in_run_directories(tmp_path):
    good = write_run(tmp_path / "good", noise(16, 100))
    one_line_error("no such run directory", compare_runs, tmp_path / "missing", good)
    (tmp_path / "empty").mkdir()
    one_line_error("empty: not a finished run .no summary.json", compare_runs, good, tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    one_line_error("broken/summary.json: unreadable", load_run_logprobs, tmp_path / "broken")
    no_test = write_run(tmp_path / "no_test", noise(16, 100), test_ppl=None)
    one_line_error("no test evaluation .no test_ppl", load_run_logprobs, no_test)
    (write_run(tmp_path / "no_logprobs", noise(16, 100)) / "test_logprobs.npy").unlink()
    one_line_error("no_logprobs: no test_logprobs.npy", load_run_logprobs, tmp_path / "no_logprobs")
    short = write_run(tmp_path / "short", noise(16, 100), test_tokens=120)
    one_line_error("100 log-probabilities, summary.json says test_tokens 120", load_run_logprobs, short)
    nan = write_run(tmp_path / "nan", np.append(noise(16, 99), np.nan))
    one_line_error("1 log-probabilities are not finite and <= 0 .the first is token 99: nan", load_run_logprobs, nan)
    positive = write_run(tmp_path / "positive", np.append(0.5, noise(16, 99)))
    one_line_error("not finite and <= 0 .the first is token 0", load_run_logprobs, positive)
    other = write_run(tmp_path / "other", noise(17, 100), sha="other", test_text="valid.txt")
    one_line_error("evaluated on different test tokens .test.txt vs valid.txt", compare_runs, good, other)
    one_line_error("method must be one of bootstrap, permutation", compare_runs, good, good, method="t")
    (tmp_path / "corpus.txt").write_text("a b\n")
    one_line_error("corpus.txt: not a run directory", compare_runs, good, tmp_path / "corpus.txt")
    retokenized = write_run(tmp_path / "retokenized", noise(17, 100), sha="other")  # the same test.txt
    one_line_error(r"different test tokens .test.txt gave different tokens: different vocabularies", compare_runs,
                   good, retokenized)
    one_line_error("--seed must be 0 or more, not -1", compare_runs, good, good, seed=-1)


def test_errors_in_lines_and_blocks(tmp_path):
    a = noise(18, 100)
    split_1 = write_run(tmp_path / "one", a, lines=[0, 50, 100])
    split_2 = write_run(tmp_path / "two", a, lines=[0, 60, 100])
    one_line_error("split the same test tokens into different lines", compare_runs, split_1, split_2, block=10)
    bad = write_run(tmp_path / "bad", a, lines=[0, 50, 99])
    one_line_error("test_lines.npy: line offsets must rise from 0 to the 100", compare_runs, bad, bad)
    one_line_error("must rise from 0", paired_bootstrap, a, a, lines=[0, 60, 50, 100])
    one_line_error("run A has 100 test tokens and run B 99", paired_bootstrap, a, a[:99])
    one_line_error("all 100 test tokens fall in one block of 1000", paired_permutation, a, a)
    one_line_error("at least 2 blocks", paired_bootstrap, a, a, block=10, lines=[0, 100])
    one_line_error("must be at least 1", paired_bootstrap, a, a, block=0)


def lines_without(lines: list[int], oov: list[int]) -> list[int]:
    """Line offsets after leaving out the tokens at ``oov``, counted line by line."""
    moved = [0]
    for start, end in zip(lines, lines[1:]):
        moved.append(moved[-1] + sum(1 for t in range(start, end) if t not in oov))
    return moved


def test_exclude_oov_compares_the_other_tokens_only(tmp_path):
    a, b = noise(21, 300), noise(22, 300)
    lines = [0, 40, 90, 100, 180, 260, 300]
    oov = [0, 5, 39, 40, 95, 96, 97, 98, 99, 299]  # line 2 (90..100) keeps only 90..94
    run_a = write_run(tmp_path / "a", a, lines=lines)
    run_b = write_run(tmp_path / "b", b, lines=lines)
    for run in (run_a, run_b):
        np.save(run / "test_oov.npy", np.array(oov, dtype=np.int64))
    kept = [t for t in range(300) if t not in oov]
    a32, b32 = (x.astype(np.float32).astype(np.float64)[kept] for x in (a, b))
    c = compare_runs(run_a, run_b, block=50, resamples=300, seed=2, exclude_oov=True)
    expected = paired_bootstrap(a32, b32, block=50, lines=lines_without(lines, oov), resamples=300, seed=2)
    assert c == replace(expected, oov=10, without_oov=True)
    assert c.tokens == 290 and c.ppl_a == pytest.approx(math.exp(-math.fsum(a32) / 290), rel=1e-12)
    assert "out-of-vocabulary  10 of 300 test tokens (3.3%), left out" in format_comparison(c)
    everything = compare_runs(run_a, run_b, block=50, resamples=300, seed=2)
    assert everything.tokens == 300 and everything.oov == 10 and not everything.without_oov
    assert "10 of 300 test tokens (3.3%), included (--exclude-oov leaves them out)" in format_comparison(everything)


def test_exclude_oov_errors(tmp_path):
    a = noise(23, 100)
    marked = write_run(tmp_path / "marked", a)
    np.save(marked / "test_oov.npy", np.array([3, 7], dtype=np.int64))
    unmarked = write_run(tmp_path / "unmarked", a)
    one_line_error("unmarked: no test_oov.npy .the run predates", compare_runs, marked, unmarked, exclude_oov=True)
    assert compare_runs(marked, unmarked, resamples=100).oov is None  # without the option, nothing is needed
    other = write_run(tmp_path / "other", a)
    np.save(other / "test_oov.npy", np.array([3, 8], dtype=np.int64))
    one_line_error("mark different test tokens out-of-vocabulary", compare_runs, marked, other)
    for bad in ([7, 3], [3, 100], [-1, 3]):
        np.save(other / "test_oov.npy", np.array(bad, dtype=np.int64))
        one_line_error("must be a 1-d rising integer array within the 100 test tokens", compare_runs, other, other)
