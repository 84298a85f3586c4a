"""The ranks file: byte layout written by hand from the documentation, round trips,
and refusal of every kind of damaged file."""
from __future__ import annotations

import errno
import io
import json
import os
import struct
import tempfile

import numpy as np
import pytest

from corpora import NgteachError
from ngram_teacher import RankFile, RankFileWriter
from ngram_teacher.rankfile import id_dtype_for, write_rank_file

REQUIRED = ("format_version", "n_positions", "k", "id_dtype", "pad_id", "vocab_size", "vocab_sha256",
            "tokens_sha256", "gt_first", "teacher", "scores")

IDS = [[5, 1], [2, 65535], [0, 3]]
ORDERS = [[1, 1], [2, 0], [3, 1]]
SCORES = [[10, 7], [4, 0], [1, 70000]]


def header_dict(**changes) -> dict:
    header = {
        "format_version": 1,
        "n_positions": 3,
        "k": 2,
        "id_dtype": "<u2",
        "pad_id": 65535,
        "vocab_size": 6,
        "vocab_sha256": "ab" * 32,
        "tokens_sha256": "cd" * 32,
        "gt_first": True,
        "corpus": "hand.txt",
        "teacher": {"kind": "count-ngram", "order": 3, "ties": "word id"},
        "scores": {"kind": "count", "dtype": "<u4"},
    }
    header.update(changes)
    return header


def handmade(header: dict | bytes, arrays: list[bytes], pad_header: bool = True) -> bytes:
    """A ranks file built from the documented layout only: magic, uint32 LE length H,
    JSON padded with spaces so that 12 + H is a multiple of 64, then each array at the
    next multiple of 64 (zero padding)."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    length = len(text)
    if pad_header:
        length = (12 + len(text) + 63) // 64 * 64 - 12
    out = b"NGTRANKS" + struct.pack("<I", length) + text.ljust(length, b" ")
    for array in arrays:
        out += b"\x00" * (-len(out) % 64)
        out += array
    return out


def hand_arrays(with_scores: bool = True) -> list[bytes]:
    flat_ids = [x for row in IDS for x in row]
    flat_orders = [x for row in ORDERS for x in row]
    arrays = [struct.pack("<6H", *flat_ids), bytes(flat_orders)]
    if with_scores:
        arrays.append(struct.pack("<6I", *[x for row in SCORES for x in row]))
    return arrays


def write(tmp_path, data: bytes, name="hand.bin"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_read_a_handmade_file(tmp_path):
    path = write(tmp_path, handmade(header_dict(), hand_arrays()))
    ranks = RankFile(path)
    assert len(ranks) == 3 and ranks.k == 2
    assert ranks.ids.dtype == np.dtype("<u2")
    assert ranks.ids.tolist() == IDS
    assert ranks.orders.dtype == np.uint8 and ranks.orders.tolist() == ORDERS
    assert ranks.scores.dtype == np.dtype("<u4") and ranks.scores.tolist() == SCORES
    assert ranks.header["corpus"] == "hand.txt" and ranks.header["gt_first"] is True


def test_read_a_handmade_file_without_scores_and_u4_ids(tmp_path):
    header = header_dict(id_dtype="<u4", pad_id=0xFFFFFFFF, vocab_size=70_000, scores=None)
    ids = [[69_999, 1], [2, 0xFFFFFFFF], [0, 3]]
    arrays = [struct.pack("<6I", *[x for row in ids for x in row]), bytes([1, 1, 2, 0, 3, 1])]
    ranks = RankFile(write(tmp_path, handmade(header, arrays)))
    assert ranks.ids.dtype == np.dtype("<u4") and ranks.ids.tolist() == ids
    assert ranks.orders.tolist() == ORDERS
    assert ranks.scores is None


def parse_by_hand(data: bytes):
    """Read a ranks file with struct/json only, checking the documented layout."""
    assert data[:8] == b"NGTRANKS"
    (length,) = struct.unpack("<I", data[8:12])
    assert (12 + length) % 64 == 0
    raw = data[12:12 + length]
    assert raw == raw.rstrip(b" ") + b" " * (len(raw) - len(raw.rstrip(b" ")))
    header = json.loads(raw)
    n, k = header["n_positions"], header["k"]
    offset = 12 + length
    arrays = {}
    specs = [("ids", header["id_dtype"]), ("orders", "u1")]
    if header["scores"] is not None:
        specs.append(("scores", header["scores"]["dtype"]))
    for name, dtype in specs:
        assert offset % 64 == 0
        size = n * k * np.dtype(dtype).itemsize
        arrays[name] = np.frombuffer(data[offset:offset + size], dtype=dtype).reshape(n, k)
        end = offset + size
        offset = (end + 63) // 64 * 64
        if name != specs[-1][0]:
            assert data[end:offset] == b"\x00" * (offset - end)  # zero padding between arrays
    assert len(data) == end  # the file ends exactly at the end of the last array
    return header, arrays


@pytest.mark.parametrize("with_scores", [True, False])
@pytest.mark.parametrize("n, k", [(3, 2), (1, 1), (17, 5), (0, 4)])
def test_writer_output_follows_the_documented_layout(tmp_path, n, k, with_scores):
    rng = np.random.default_rng(n * 10 + k)
    header = header_dict(n_positions=n, k=k, scores={"kind": "count", "dtype": "<u4"} if with_scores else None)
    ids = rng.integers(0, 6, (n, k)).astype(np.uint16)
    orders = rng.integers(0, 4, (n, k)).astype(np.uint8)
    scores = rng.integers(0, 1 << 31, (n, k)).astype(np.uint32)
    with RankFileWriter(header, tmp_path) as writer:
        writer.arrays["ids"][:] = ids
        writer.arrays["orders"][:] = orders
        if with_scores:
            writer.arrays["scores"][:] = scores
        writer.publish(tmp_path / "out.bin")
    assert os.listdir(tmp_path) == ["out.bin"]
    hand_header, arrays = parse_by_hand((tmp_path / "out.bin").read_bytes())
    for key in header:
        assert hand_header[key] == header[key]
    np.testing.assert_array_equal(arrays["ids"], ids)
    np.testing.assert_array_equal(arrays["orders"], orders)
    if with_scores:
        np.testing.assert_array_equal(arrays["scores"], scores)
    else:
        assert "scores" not in arrays
    # and the reader agrees
    ranks = RankFile(tmp_path / "out.bin")
    np.testing.assert_array_equal(ranks.ids, ids)
    np.testing.assert_array_equal(ranks.orders, orders)
    assert (ranks.scores is None) == (not with_scores)


def test_writer_copy_to_a_stream(tmp_path):
    header = header_dict()
    buffer = io.BytesIO()
    with RankFileWriter(header, tmp_path) as writer:
        writer.arrays["ids"][:] = IDS
        writer.arrays["orders"][:] = ORDERS
        writer.arrays["scores"][:] = SCORES
        writer.copy_to(buffer)
    assert os.listdir(tmp_path) == []  # the temporary file is gone
    _, arrays = parse_by_hand(buffer.getvalue())
    assert arrays["ids"].tolist() == IDS and arrays["scores"].tolist() == SCORES


def test_writer_failure_leaves_no_file(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RankFileWriter(header_dict(), tmp_path) as writer:
            writer.arrays["ids"][:] = 1
            1 / 0
    assert os.listdir(tmp_path) == []


def test_writer_requires_header_keys(tmp_path):
    header = header_dict()
    del header["tokens_sha256"]
    with pytest.raises(ValueError):
        RankFileWriter(header, tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("vocab_size, dtype", [(2, "<u2"), (65_534, "<u2"), (65_535, "<u4"), (65_536, "<u4"),
                                               (10**6, "<u4")])
def test_id_dtype_for(vocab_size, dtype):
    assert id_dtype_for(vocab_size) == dtype


# ---- damaged files ----------------------------------------------------------------------------

def good_file() -> bytes:
    return handmade(header_dict(), hand_arrays())


def without(key: str) -> bytes:
    header = header_dict()
    del header[key]
    return handmade(header, hand_arrays())


DAMAGED = {
    "bad magic": b"NGTRANKX" + good_file()[8:],
    "other magic": b"\x89PNG\r\n\x1a\n" + good_file()[8:],
    "empty file": b"",
    "cut in the magic": b"NGTRA",
    "cut in the length": good_file()[:10],
    "truncated header": good_file()[:40],
    "header only": good_file()[:64],
    "truncated data": good_file()[:-1],
    "truncated data by an array": good_file()[:-24],
    "extra bytes": good_file() + b"\x00",
    "extra array": good_file() + b"\x00" * 64,
    "non-JSON header": handmade(b'{"format_version": 1, "k": ', hand_arrays()),
    "non-UTF-8 header": handmade(b'{"x": "\xff\xfe"}', hand_arrays()),
    "header not an object": handmade(b"[1, 2, 3]", hand_arrays()),
    "header not padded": handmade(header_dict(), hand_arrays(), pad_header=False),
    "huge header length": b"NGTRANKS" + struct.pack("<I", 0xFFFFFFC4) + good_file()[12:],
    "format_version 2": handmade(header_dict(format_version=2), hand_arrays()),
    "format_version '1'": handmade(header_dict(format_version="1"), hand_arrays()),
    "format_version 1.0": handmade(header_dict(format_version=1.0), hand_arrays()),
    "gt_first a string": handmade(header_dict(gt_first="yes"), hand_arrays()),
    "vocab_sha256 an integer": handmade(header_dict(vocab_sha256=5), hand_arrays()),
    "tokens_sha256 null": handmade(header_dict(tokens_sha256=None), hand_arrays()),
    "vocab_sha256 not hexadecimal": handmade(header_dict(vocab_sha256="zz" * 32), hand_arrays()),
    "k = 0": handmade(header_dict(k=0), []),
    "k negative": handmade(header_dict(k=-2), []),
    "n_positions not an integer": handmade(header_dict(n_positions=3.5), hand_arrays()),
    "bad id_dtype": handmade(header_dict(id_dtype="<i8"), hand_arrays()),
    "vocab too big for u2": handmade(header_dict(vocab_size=70_000), hand_arrays()),
    "bad scores dtype": handmade(header_dict(scores={"kind": "count", "dtype": "<f8"}), hand_arrays()),
    "scores not an object": handmade(header_dict(scores="count"), hand_arrays()),
    "teacher not an object": handmade(header_dict(teacher="count-ngram"), hand_arrays()),
    "size of another k": handmade(header_dict(k=3), hand_arrays()),
    **{f"missing {key}": without(key) for key in REQUIRED},
}


def test_the_good_file_is_good(tmp_path):
    RankFile(write(tmp_path, good_file()))


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_file_is_refused(tmp_path, name):
    path = write(tmp_path, DAMAGED[name], "damaged.bin")
    with pytest.raises(NgteachError, match="damaged.bin"):
        RankFile(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(NgteachError, match="nothing.bin"):
        RankFile(tmp_path / "nothing.bin")
    (tmp_path / "adir").mkdir()
    with pytest.raises(NgteachError, match="adir"):
        RankFile(tmp_path / "adir")


def test_check_matches(tmp_path):
    ranks = RankFile(write(tmp_path, good_file()))
    ranks.check_matches("ab" * 32)
    ranks.check_matches("ab" * 32, "cd" * 32)
    with pytest.raises(NgteachError, match="vocabulary"):
        ranks.check_matches("00" * 32)
    with pytest.raises(NgteachError, match="hand.bin"):
        ranks.check_matches("00" * 32, "cd" * 32)
    with pytest.raises(NgteachError, match="token stream"):
        ranks.check_matches("ab" * 32, "00" * 32)


@pytest.mark.parametrize("field, value", [("format_version", "1"), ("format_version", 1.0), ("gt_first", "yes"),
                                          ("vocab_sha256", 5), ("tokens_sha256", None)])
def test_a_header_field_of_the_wrong_type_is_named(tmp_path, field, value):
    path = write(tmp_path, handmade(header_dict(**{field: value}), hand_arrays()))
    with pytest.raises(NgteachError, match=rf"^{path}: corrupt ranks file header \('{field}' must be"):
        RankFile(path)


def failing_memmap(*args, **kwargs):
    raise OSError(errno.EFBIG, "File too large")


def test_writer_failing_in_its_constructor_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "memmap", failing_memmap)
    with pytest.raises(OSError):
        RankFileWriter(header_dict(), tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_ranks_file_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "memmap", failing_memmap)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "sys-tmp"))
    (tmp_path / "sys-tmp").mkdir()
    with pytest.raises(NgteachError, match=rf"^{tmp_path / 'r.bin'}: cannot create a ranks file of [0-9,]+ bytes "
                                           r"\(File too large\)$"):
        write_rank_file(header_dict(), tmp_path / "r.bin", lambda arrays: None)
    with pytest.raises(NgteachError, match=r"^standard output .*\(File too large\)$"):
        write_rank_file(header_dict(), io.BytesIO(), lambda arrays: None)
    assert os.listdir(tmp_path) == ["sys-tmp"] and os.listdir(tmp_path / "sys-tmp") == []


def test_check_ids(tmp_path):
    ranks = RankFile(write(tmp_path, good_file()))
    ranks.check_ids()
    with pytest.raises(NgteachError, match=r"hand.bin: corrupt ranks file \(ids out of range in row 0\)"):
        ranks.check_ids(5)  # row 0 lists id 5
    ids = [[5, 1], [2, 4], [0, 3]]
    bad_id = write(tmp_path, handmade(header_dict(), [struct.pack("<6H", *sum(ids, [])), *hand_arrays()[1:]]), "x.bin")
    with pytest.raises(NgteachError, match=r"x.bin: corrupt ranks file \(ids out of range in row 1\)"):
        RankFile(bad_id).check_ids()  # an id where the orders say padding
    orders = [[1, 1], [2, 0], [0, 1]]
    hole = write(tmp_path, handmade(header_dict(), [struct.pack("<6H", 5, 1, 2, 65535, 65535, 3),
                                                    bytes(sum(orders, [])), hand_arrays()[2]]), "hole.bin")
    with pytest.raises(NgteachError, match=r"hole.bin: corrupt ranks file \(padding before real entries in row 2\)"):
        RankFile(hole).check_ids()


def test_leftover_mass_against_a_loop_over_the_rows(tmp_path):
    rng = np.random.default_rng(7)
    n, k = 3000, 4
    probs = rng.dirichlet(np.ones(k + 1), n)[:, :k]  # each row leaves its last share outside
    orders = rng.integers(1, 4, (n, k)).astype(np.uint8)
    orders[rng.random((n, k)).cumsum(1) > 2.5] = 0  # padding at the ends of some rows
    header = header_dict(n_positions=n, k=k, scores={"kind": "logprob", "dtype": "<f4"})
    with RankFileWriter(header, tmp_path) as writer:
        writer.arrays["ids"][:] = np.where(orders > 0, 1, header["pad_id"])
        writer.arrays["orders"][:] = orders
        writer.arrays["scores"][:] = np.log(probs).astype(np.float32)
        writer.publish(tmp_path / "lp.bin")
    stored = np.exp(np.log(probs).astype(np.float32).astype(np.float64))
    left = [1 - sum(stored[i, j] for j in range(k) if orders[i, j]) for i in range(n)]
    summary = RankFile(tmp_path / "lp.bin").leftover_mass((0.5, 0.9))
    assert summary["mean"] == pytest.approx(sum(left) / n, rel=1e-12)
    for q in (0.5, 0.9):  # the smallest value at or above which a share q of the rows lie, to 1e-4
        assert summary[str(q)] == pytest.approx(sorted(left)[int(np.ceil(q * n)) - 1], abs=1e-4)


def test_leftover_mass_by_hand_and_only_for_log_probabilities(tmp_path):
    # rows keep 0.5 + 0.25, 0.5 (the second entry is padding) and all of it: 0.25, 0.5 and 0 left
    header = header_dict(scores={"kind": "logprob", "dtype": "<f4"})
    with RankFileWriter(header, tmp_path) as writer:
        writer.arrays["ids"][:] = IDS
        writer.arrays["orders"][:] = ORDERS
        writer.arrays["scores"][:] = np.log([[0.5, 0.25], [0.5, 0.9], [0.5, 0.5]])
        writer.publish(tmp_path / "lp.bin")
    summary = RankFile(tmp_path / "lp.bin").leftover_mass((0.5, 1.0))
    assert summary == pytest.approx({"mean": 0.25, "0.5": 0.25, "1.0": 0.5})
    def counts(arrays: dict) -> None:
        arrays["ids"][:], arrays["orders"][:], arrays["scores"][:] = IDS, ORDERS, SCORES

    write_rank_file(header_dict(), tmp_path / "counts.bin", counts)
    assert RankFile(tmp_path / "counts.bin").leftover_mass() is None
