"""Tokenization: whitespace words, one <eos> per line, strict reading of UTF-8 text."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import corpora.text
from corpora import EOS, NgteachError, WordTokenizer, check_corpus, read_blocks, scan_words
from reference import tokenize_bytes, tokenize_file


@pytest.fixture(autouse=True, params=["one-scan", "two-halves"])
def scanning(request, monkeypatch):
    """Every test both ways: a file scanned from start to end, and (any size) as two halves
    in two threads, joined; the ids, words and errors must be the same."""
    if request.param == "two-halves":
        monkeypatch.setattr(corpora.text, "SPLIT_BYTES", 1)
    return request.param


def words_of(path) -> list[str]:
    scanned = scan_words(path)
    return [scanned.types[i] for i in scanned.stream]


def trained_words(path, **kw) -> list[str]:
    tokenizer, ids = WordTokenizer.train(path, **kw)
    return [tokenizer.vocab.tokens[i] for i in ids]


# ---- hand-worked examples ---------------------------------------------------------------

@pytest.mark.parametrize(
    "data, expected",
    [
        (b"a b c\n", ["a", "b", "c", EOS]),
        (b"a b c", ["a", "b", "c", EOS]),  # last line without a newline still ends
        (b"a\n\nb\n", ["a", EOS, EOS, "b", EOS]),  # blank line: one <eos>
        (b"\n", [EOS]),
        (b"\n\n\n", [EOS, EOS, EOS]),
        (b"   \n", [EOS]),  # a line of spaces is a blank line
        (b"  x \t y  \n", ["x", "y", EOS]),
        (b"a\r\nb\r\n", ["a", EOS, "b", EOS]),  # CRLF is one line end
        (b"a\rb\r", ["a", EOS, "b", EOS]),  # CR alone ends a line
        (b"a\r\rb", ["a", EOS, EOS, "b", EOS]),
        (b"a\r\n\r\nb", ["a", EOS, EOS, "b", EOS]),
        (b"a\n\r\nb\n\r", ["a", EOS, EOS, "b", EOS, EOS]),
        (b"x\x0by\x0cz\n", ["x", "y", "z", EOS]),  # VT and FF split words, do not end lines
        ("caf\u00e9 na\u00efve \u65e5\u672c\n".encode(), ["caf\u00e9", "na\u00efve", "\u65e5\u672c", EOS]),
        ("a\u00a0b\u2003c\n".encode(), ["a", "b", "c", EOS]),  # unicode spaces split (str.split)
        ("a\u2028b\x85c\n".encode(), ["a", "b", "c", EOS]),  # ...and are not line ends in text mode
        (b"<unk> the <unk>\n", ["<unk>", "the", "<unk>", EOS]),
    ],
)
def test_hand_worked_tokenization(write_corpus, data, expected):
    path = write_corpus(data)
    assert words_of(path) == expected
    assert trained_words(path) == expected
    # the reference agrees with the hand-worked answer too (so it can be trusted below)
    assert tokenize_bytes(data) == expected


def test_eos_id_is_zero_in_scan_and_counts(write_corpus):
    scanned = scan_words(write_corpus("b a b\n\nb\n"))
    assert scanned.types[0] == EOS
    counts = dict(zip(scanned.types, scanned.counts.tolist()))
    assert counts == {EOS: 3, "a": 1, "b": 3}
    assert scanned.stream.dtype.name == "uint32"


# ---- random text against the reference, at random block sizes ---------------------------

ALPHABET = ["a", "b", "\u00e9", "\u4e2d", " ", " ", "\t", "\n", "\n", "\r", "\r\n", "\x0b", "\x0c",
            "\x1c", "\x85", "\u2028", "\u00a0", "<eos>", "<unk>"]
texts = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=60).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, block=st.integers(1, 12))
def test_random_text_matches_reference_at_any_block_size(tmp_path, text, block):
    path = tmp_path / "random.txt"
    data = text.encode("utf-8")
    path.write_bytes(data)
    expected = tokenize_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", block)
        assert words_of(path) == expected
        assert trained_words(path) == expected
        # blocks end at a line end (all but the last) and their text adds up to the file
        blocks = list(read_blocks(path))
    assert all(b.endswith("\n") for b in blocks[:-1])
    assert "".join(blocks) == data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def test_every_unicode_space_and_its_neighbours_split_as_str_split(write_corpus):
    # The scanner (C, on UTF-8 bytes) must split exactly where str.split() does: every
    # character str.isspace() accepts, and none of the characters sharing their lead bytes.
    spaces = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and chr(c).isspace()]
    neighbours = [chr(c) for lo, hi in [(0x01, 0x7F), (0x80, 0x800), (0x1600, 0x1700), (0x2000, 0x2100),
                                        (0x3000, 0x3100), (0xFFF0, 0x10000), (0x10000, 0x10010)]
                  for c in range(lo, hi)]
    assert len(spaces) == 29
    data = "".join(f"x{c}y{c}{c}z\n" for c in sorted(set(spaces + neighbours)) if c not in "\n\r").encode()
    assert words_of(write_corpus(data)) == tokenize_bytes(data)


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64, 4097])
def test_block_size_does_not_change_a_real_slice(wt2_valid, tmp_path, block):
    data = wt2_valid.read_bytes()[:20_000]
    data = data[: data.rfind(b"\n") + 1] + "end caf\u00e9\r\nno newline at the end".encode()
    path = tmp_path / "slice.txt"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", block)
        assert words_of(path) == tokenize_bytes(data)


# ---- the real corpora ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "fixture, n_tokens",
    [("wt2_valid", 217_646), ("wt2_test", 245_569), ("shakespeare", 242_651)],
)
def test_real_corpus_token_counts(request, fixture, n_tokens):
    path = request.getfixturevalue(fixture)
    words = words_of(path)
    assert len(words) == n_tokens
    assert words == tokenize_file(path)


def test_real_corpus_small_blocks_same_stream(wt2_valid):
    whole = scan_words(wt2_valid)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", 4096 + 7)
        blocked = scan_words(wt2_valid)
    assert [whole.types[i] for i in whole.stream] == [blocked.types[i] for i in blocked.stream]
    assert len(blocked.stream) == 217_646


@pytest.mark.parametrize("fixture", ["wt2_valid", "shakespeare"])
def test_two_halves_give_the_ids_of_one_scan(request, fixture, monkeypatch):
    path = request.getfixturevalue(fixture)
    monkeypatch.setattr(corpora.text, "SPLIT_BYTES", 1 << 40)
    whole = scan_words(path)
    monkeypatch.setattr(corpora.text, "SPLIT_BYTES", 1)
    monkeypatch.setattr(corpora.text, "BLOCK_BYTES", 1 << 16)
    halves = scan_words(path)
    assert halves.types == whole.types  # words new in the second half are numbered after the first's
    assert np.array_equal(halves.stream, whole.stream) and np.array_equal(halves.counts, whole.counts)


def test_on_bytes_reports_the_file_size(write_corpus):
    path = write_corpus("one two\nthree\n" * 50)
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", 16)
        scan_words(path, on_bytes=seen.append)
    assert sum(seen) == path.stat().st_size
    assert len(seen) > 1


# ---- strictness ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    for reader in (check_corpus, scan_words, lambda p: list(read_blocks(p))):
        with pytest.raises(NgteachError, match="nope.txt"):
            reader(path)


def test_directory(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(NgteachError, match="adir") as info:
        scan_words(tmp_path / "adir")
    assert "directory" in str(info.value)


def test_empty_file(write_corpus):
    path = write_corpus(b"", "empty.txt")
    with pytest.raises(NgteachError, match="empty.txt") as info:
        scan_words(path)
    assert "empty" in str(info.value).replace("empty.txt", "")


@pytest.mark.parametrize("block", [1 << 24, 5])
def test_nul_byte_is_binary(write_corpus, block):
    data = b"hello world\nsecond line\nx\x00y\n"
    path = write_corpus(data, "bin.dat")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", block)
        with pytest.raises(NgteachError, match="bin.dat") as info:
            scan_words(path)
    message = str(info.value)
    assert "binary" in message
    nul_at = data.index(b"\x00")
    assert f"offset {nul_at}" in message


@pytest.mark.parametrize("block", [1 << 24, 3, 7])
@pytest.mark.parametrize(
    "data, bad_offset",
    [
        (b"ok line\nbad \xff here\n", 12),
        ("caf\u00e9\nline two\n".encode() + b"\xc3(\n", 15),  # broken 2-byte sequence
        ("\u65e5\u672c\n".encode() + b"tail \xe6\x97", 12),  # cut 3-byte sequence at the end
        (b"\x80starts badly\n", 0),
    ],
)
def test_invalid_utf8(write_corpus, data, bad_offset, block):
    path = write_corpus(data, "latin.txt")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")  # the test data is really invalid
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", block)
        with pytest.raises(NgteachError, match="latin.txt") as info:
            scan_words(path)
    message = str(info.value)
    assert "UTF-8" in message
    assert f"offset {bad_offset}" in message
    assert f"0x{data[bad_offset]:02x}" in message


def test_latin1_file_is_refused_not_misread(write_corpus):
    path = write_corpus("na\u00efve r\u00e9sum\u00e9\n".encode("latin-1"), "l1.txt")
    with pytest.raises(NgteachError, match="offset 2"):
        WordTokenizer.train(path)


def test_error_is_ngteach_error_not_oserror(tmp_path):
    # NgteachError is the one type callers catch for bad input
    with pytest.raises(NgteachError) as info:
        scan_words(tmp_path / "missing.txt")
    assert not isinstance(info.value, OSError)


def test_progress_rates_read_per_second_or_seconds_per_unit():
    from corpora.progress import rate

    assert rate(None, "runs") == "" and rate(0.0, "batches") == ""
    assert rate(2500.4, "positions") == "2,500 positions/s"
    assert rate(1 / 84, "runs") == "84 s/run" and rate(0.5, "batches") == "2 s/batch"
    assert rate(3 * 1024 * 1024, "bytes") == "3.0 MiB/s"


def test_a_text_without_line_ends_is_read_in_bounded_blocks(tmp_path):
    """Memory does not grow with the length of a line: a line-free text is cut at spaces
    into blocks of about the block size, and tokenizes as if read whole."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdé"), rng.integers(1, 9))) for _ in range(60_000)]
    data = (" ".join(words) + "\tlast").encode("utf-8")  # one line, no line end at all
    path = tmp_path / "one-line.txt"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpora.text, "BLOCK_BYTES", 4096)
        blocks = list(read_blocks(path, within_lines=True))
        assert words_of(path) == tokenize_bytes(data)
        whole_lines = list(read_blocks(path))
    assert len(blocks) > 50 and max(len(b.encode()) for b in blocks) <= 2 * 4096
    assert "".join(blocks) == data.decode("utf-8") and len(whole_lines) == 1
