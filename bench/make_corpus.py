"""Generate a synthetic word-level corpus of exactly N tokens for benchmarks.

The text is sampled from a trigram model of real text (by default WikiText-2 valid +
test and Tiny Shakespeare, read from ../shared/corpora/, never copied). The source is
tokenized like ``ngteach build`` does (whitespace words, one ``<eos>`` per line), counted
with :func:`ngram_teacher.count_orders`, and thousands of independent chains are advanced
together with numpy. In the count tables the trigram continuations of a bigram context
are one contiguous group; each group is laid out as an "urn" (entry j repeated count[j]
times, i.e. the cumulative counts made explicit), so a draw is one random offset into the
group. A context without continuations backs off to the bigram, then the unigram table.

``<eos>`` becomes a newline, and the last token is always ``<eos>``, so the file
re-tokenizes to exactly N tokens. Same --seed -> same bytes. The file is written aside and
renamed into place.

    python bench/make_corpus.py --tokens 20M --seed 0 --out bench/data/corpus-20M.txt
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repo's own package, whatever the installed copy looks like
from corpora.files import temp_file  # noqa: E402
from ngram_teacher import count_orders  # noqa: E402
SOURCES = ["wikitext-2/valid.txt", "wikitext-2/test.txt", "tinyshakespeare/input.txt"]
EOS = "<eos>"
CHAINS = 1 << 15
WRITE_CHUNK = 1 << 22


def parse_count(text: str) -> int:
    """'20M' -> 20_000_000, '500k' -> 500_000, '1e6' -> 1_000_000."""
    text = text.strip().lower()
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def read_source(paths: list[Path]) -> tuple[list[str], np.ndarray]:
    """Words (id 0 = <eos>) and the token ids of the concatenated files, tokenized like
    corpora.scan_words: universal newlines, str.split() words, <eos> per line."""
    ids = {EOS: 0}
    stream = []
    for path in paths:
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n")
        if not text.endswith("\n"):
            text += "\n"
        words = text.replace("\n", f" {EOS} ").split()
        stream.extend(ids.setdefault(w, len(ids)) for w in words)
    return list(ids), np.array(stream, np.uint32)


class TrigramSampler:
    """The order 1-3 count tables of the source, as one urn per context (see module doc)."""

    def __init__(self, source: np.ndarray, vocab_size: int):
        t1, t2, t3 = count_orders(source, vocab_size, 3)
        assert np.array_equal(t1.words, np.arange(vocab_size)), "every word id occurs, so unigram id = word id"
        n1, n2 = len(t1), len(t2)
        # Entries of all three orders in one array: trigrams, then bigrams, then unigrams.
        self.words = np.concatenate([t3.words, t2.words, t1.words]).astype(np.int64)
        counts = np.concatenate([t3.counts, t2.counts, t1.counts]).astype(np.int64)
        self.urn = np.repeat(np.arange(len(counts)), counts)
        start = np.concatenate([[0], np.cumsum(counts)])  # urn offset of each entry (and the end)
        # Urn range of each context: bigram id -> its trigrams; word -> its bigrams; all unigrams.
        self.tri_lo, self.tri_hi = start[t3.offsets[:-1]], start[t3.offsets[1:]]
        base2 = len(t3)
        self.bi_lo, self.bi_hi = start[base2 + t2.offsets[:-1]], start[base2 + t2.offsets[1:]]
        self.uni_lo, self.uni_hi = start[base2 + n2], start[base2 + n2 + n1]
        # The bigram context that follows each entry: for trigram (a, b, c) the bigram (b, c),
        # for bigram (b, c) itself, after a unigram none (-1).
        bigram_key = np.repeat(np.arange(n1, dtype=np.int64), np.diff(t2.offsets)) * vocab_size + t2.words
        tri_ctx = np.repeat(np.arange(n2), np.diff(t3.offsets))
        suffix = np.searchsorted(bigram_key, t2.words[tri_ctx].astype(np.int64) * vocab_size + t3.words)
        self.next_ctx = np.concatenate([suffix, np.arange(n2), np.full(n1, -1)])

    def sample(self, n_tokens: int, rng: np.random.Generator, eos_id: int = 0) -> np.ndarray:
        """n_tokens ids: CHAINS chains, each starting after <eos>, laid end to end."""
        chains = min(CHAINS, n_tokens)
        steps = -(-n_tokens // chains)
        out = np.empty((chains, steps), np.uint32)
        ctx = np.full(chains, -1, np.int64)  # bigram id of the last two words, -1 if unknown
        last = np.full(chains, eos_id, np.int64)
        for step in range(steps):
            lo, hi = self.bi_lo[last], self.bi_hi[last]
            no_bigram = hi == lo
            lo[no_bigram], hi[no_bigram] = self.uni_lo, self.uni_hi
            known = np.flatnonzero(ctx >= 0)
            tri_lo, tri_hi = self.tri_lo[ctx[known]], self.tri_hi[ctx[known]]
            has_tri = tri_hi > tri_lo
            lo[known[has_tri]], hi[known[has_tri]] = tri_lo[has_tri], tri_hi[has_tri]
            pick = np.minimum(lo + (rng.random(chains) * (hi - lo)).astype(np.int64), hi - 1)
            entry = self.urn[pick]
            last, ctx = self.words[entry], self.next_ctx[entry]
            out[:, step] = last
        tokens = out.reshape(-1)[:n_tokens]
        tokens[-1] = eos_id
        return tokens


def write_text(tokens: np.ndarray, words: list[str], out: Path, eos_id: int = 0) -> None:
    """Words separated by one space, <eos> as a newline; written aside, then renamed."""
    spaced = np.array([w + " " for w in words] + [w for w in words], dtype=object)
    spaced[eos_id] = spaced[len(words) + eos_id] = "\n"
    next_is_eos = np.append(tokens[1:] == eos_id, True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(out.parent, f".{out.name}.")  # a new file's usual permissions, not mkstemp's 0600
    try:
        with open(tmp, "wb") as f:
            for start in range(0, len(tokens), WRITE_CHUNK):
                stop = start + WRITE_CHUNK
                pieces = spaced[tokens[start:stop] + len(words) * next_is_eos[start:stop]]
                f.write("".join(pieces).encode("utf-8"))
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def make_corpus(n_tokens: int, out: Path, seed: int = 0, sources: list[Path] | None = None) -> Path:
    sources = sources or [REPO.parent / "shared" / "corpora" / s for s in SOURCES]
    words, source = read_source(sources)
    tokens = TrigramSampler(source, len(words)).sample(n_tokens, np.random.default_rng(seed))
    write_text(tokens, words, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=parse_count, default=20_000_000, help="tokens to generate (20M, 5e6, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/data/corpus-<N>-s<seed>.txt")
    parser.add_argument("--source", type=Path, action="append", help="source text (repeatable); default: "
                        + ", ".join(f"../shared/corpora/{s}" for s in SOURCES))
    args = parser.parse_args(argv)
    if args.tokens < 1:
        parser.error("--tokens must be at least 1")
    out = args.out or REPO / "bench" / "data" / f"corpus-{args.tokens}-s{args.seed}.txt"
    started = time.perf_counter()
    make_corpus(args.tokens, out, args.seed, args.source)
    print(f"wrote {out} ({args.tokens:,} tokens, {out.stat().st_size / 1e6:,.1f} MB) "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
