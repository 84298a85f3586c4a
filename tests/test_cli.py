"""The ngteach command line, end to end in subprocesses: build, rank, query, info, and
clean single-line failures that leave nothing behind."""
from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import head_lines
from ngram_teacher import RankFile
from reference import NaiveTeacher, tokenize_file, vocabulary

SCRIPT = Path(sys.executable).with_name("ngteach")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from ngteach.cli import main; main()"]


class Workspace:
    """A working directory for the CLI plus a private TMPDIR, so that leftovers show."""

    def __init__(self, root: Path):
        self.cwd = root / "work"
        self.tmp = root / "sys-tmp"
        self.cwd.mkdir()
        self.tmp.mkdir()
        self.env = {**os.environ, "TMPDIR": str(self.tmp), "NGTEACH_CACHE": str(root / "cache"),
                    "NO_COLOR": "1"}
        self.env.pop("NGTEACH_DATA_DIR", None)

    def run(self, *args: str, stdout_file: str | None = None, stdout=None) -> subprocess.CompletedProcess:
        if stdout_file is not None:
            with open(self.cwd / stdout_file, "wb") as out:
                result = subprocess.run([*COMMAND, *args], cwd=self.cwd, env=self.env, stdout=out,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
        else:
            result = subprocess.run([*COMMAND, *args], cwd=self.cwd, env=self.env,
                                    stdout=subprocess.PIPE if stdout is None else stdout,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
        result.stderr = result.stderr.decode("utf-8", "replace")
        return result

    def ok(self, *args: str, **kw) -> subprocess.CompletedProcess:
        result = self.run(*args, **kw)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result

    def listing(self) -> set[str]:
        return {str(p.relative_to(self.cwd)) for p in self.cwd.rglob("*")}

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.cwd / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path


def assert_clean_error(result: subprocess.CompletedProcess, code: int | None = None, mentions: str | None = None):
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ngteach: error:"), result.stderr
    if mentions is not None:
        assert mentions in lines[0]


@pytest.fixture(scope="module")
def corpus_text() -> str:
    from conftest import SHAKESPEARE

    if SHAKESPEARE.is_file():
        return head_lines(SHAKESPEARE, 3000)
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(80)]
    return "".join(" ".join(rng.choice(words, 9)) + "\n" for _ in range(300))


@pytest.fixture(scope="module")
def other_text(corpus_text) -> str:
    from conftest import SHAKESPEARE

    if SHAKESPEARE.is_file():
        lines = SHAKESPEARE.read_text(encoding="utf-8").splitlines(keepends=True)
        return "".join(lines[30_000:30_150])
    return corpus_text[::-1] + "brand new words\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus_text):
    """A model built once by the CLI, copied into workspaces that need one."""
    ws = Workspace(tmp_path_factory.mktemp("built"))
    ws.write("corpus.txt", corpus_text)
    result = ws.ok("build", "corpus.txt", "--order", "4")
    assert "built ngteach-model" in result.stderr
    assert ws.listing() >= {"corpus.txt", "ngteach-model", "ngteach-model/meta.json"}
    assert os.listdir(ws.tmp) == []
    return ws.cwd / "ngteach-model"


@pytest.fixture
def ws(tmp_path, built, corpus_text) -> Workspace:
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", corpus_text)
    shutil.copytree(built, ws.cwd / "ngteach-model")
    return ws


def reference_for(ws: Workspace, corpus="corpus.txt"):
    words = tokenize_file(ws.cwd / "corpus.txt")
    vocab = vocabulary(words)
    index = {w: i for i, w in enumerate(vocab)}
    unk = index["<unk>"]
    stream = [index.get(w, unk) for w in tokenize_file(ws.cwd / corpus)]
    return NaiveTeacher([index[w] for w in words], 4), stream, vocab, index


# ---- end to end -------------------------------------------------------------------------------

def test_build_rank_info_query_end_to_end(tmp_path, corpus_text):
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", corpus_text)
    result = ws.ok("build", "corpus.txt", "--order", "4")
    assert result.stderr.startswith("built ngteach-model: order 4")
    result = ws.ok("rank", "--k", "20", stdout_file="ranks.bin")
    assert result.stderr.startswith("ranked ")
    ranks = RankFile(ws.cwd / "ranks.bin")
    teacher, stream, vocab, index = reference_for(ws)
    assert ranks.header["n_positions"] == len(stream) and ranks.k == 20
    assert ranks.header["gt_first"] is True and ranks.header["scores"] is None
    assert ranks.header["corpus"] == str((ws.cwd / "corpus.txt").resolve())
    exp_ids, exp_orders, _ = teacher.rank(stream, 20, True, 65535)
    assert ranks.ids.tolist() == exp_ids
    assert ranks.orders.tolist() == exp_orders
    assert os.listdir(ws.tmp) == []

    info = ws.ok("info", "ngteach-model").stdout.decode()
    assert f"{len(stream):,}" in info
    assert f"{len(vocab):,}" in info
    assert "4-grams" in info

    info = ws.ok("info", "ranks.bin").stdout.decode()
    assert f"{len(stream):,} x k=20" in info

    context = " ".join(tokenize_file(ws.cwd / "corpus.txt")[5:8])
    out = ws.ok("query", context, "--k", "5").stdout.decode().splitlines()
    rows = [line.split() for line in out[2:]]
    assert len(rows) == 5
    ids = [index[w] for w in context.split()]
    exp = teacher.row(ids + [0], len(ids), 5, False, 65535)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert [vocab.index(r[3]) for r in rows] == exp[0]
    assert [int(r[1]) for r in rows] == exp[1]
    assert [int(r[2].replace(",", "")) for r in rows] == exp[2]


def test_build_of_its_own(tmp_path, corpus_text):
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", corpus_text)
    ws.ok("build", "corpus.txt", "--order", "2", "--out", "m2")
    assert (ws.cwd / "m2" / "counts" / "2.words.npy").is_file()
    assert not (ws.cwd / "m2" / "counts" / "3.words.npy").exists()
    assert ws.listing() - {p for p in ws.listing() if p.startswith("m2/")} == {"corpus.txt", "m2"}
    assert os.listdir(ws.tmp) == []


def test_output_option_equals_stdout(ws):
    ws.ok("rank", "--k", "7", stdout_file="stdout.bin")
    ws.ok("rank", "--k", "7", "-o", "file.bin")
    assert (ws.cwd / "stdout.bin").read_bytes() == (ws.cwd / "file.bin").read_bytes()
    assert ws.listing() - {p for p in ws.listing() if p.startswith("ngteach-model")} == {
        "corpus.txt", "stdout.bin", "file.bin"}
    assert os.listdir(ws.tmp) == []


def test_rank_other_corpus_no_gt_first_with_scores(ws, other_text):
    ws.write("other.txt", other_text)
    ws.ok("rank", "--k", "12", "--corpus", "other.txt", "--no-gt-first", "--scores", "-o", "other.bin",
          "--threads", "2")
    ranks = RankFile(ws.cwd / "other.bin")
    teacher, stream, vocab, index = reference_for(ws, "other.txt")
    assert index["<unk>"] in stream or set(tokenize_file(ws.cwd / "other.txt")) <= set(vocab)
    assert ranks.header["gt_first"] is False
    assert ranks.header["scores"] == {"kind": "count", "dtype": "<u4"}
    assert ranks.header["corpus"] == str((ws.cwd / "other.txt").resolve())
    exp_ids, exp_orders, exp_scores = teacher.rank(stream, 12, False, 65535)
    assert ranks.ids.tolist() == exp_ids
    assert ranks.orders.tolist() == exp_orders
    assert ranks.scores.tolist() == exp_scores
    ws.ok("info", "other.bin")


def test_rank_gt_first_with_scores_other_corpus(ws, other_text):
    ws.write("other.txt", other_text)
    ws.ok("rank", "--k", "3", "--corpus", "other.txt", "--scores", stdout_file="o.bin")
    ranks = RankFile(ws.cwd / "o.bin")
    teacher, stream, _, _ = reference_for(ws, "other.txt")
    exp = teacher.rank(stream, 3, True, 65535)
    assert [ranks.ids.tolist(), ranks.orders.tolist(), ranks.scores.tolist()] == list(exp)


def test_version_and_help(tmp_path):
    ws = Workspace(tmp_path)
    assert ws.ok("--version").stdout.decode().strip() == "ngteach 0.1.0"
    assert "build" in ws.ok("--help").stdout.decode()


# ---- failures ------------------------------------------------------------------------------------

def everything(ws: Workspace) -> set[str]:
    return ws.listing() | {"TMP/" + n for n in os.listdir(ws.tmp)}


def fails_cleanly(ws: Workspace, *args, code=None, mentions=None, stdout_file=None):
    before = everything(ws)
    result = ws.run(*args, stdout_file=stdout_file)
    assert_clean_error(result, code, mentions)
    after = everything(ws)
    if stdout_file is not None:  # the shell-style redirection creates it; it must stay empty
        assert (ws.cwd / stdout_file).read_bytes() == b""
        after.discard(stdout_file)
    assert after == before, f"left behind: {after - before}"
    return result


def test_build_missing_corpus(tmp_path):
    ws = Workspace(tmp_path)
    fails_cleanly(ws, "build", "missing.txt", code=1, mentions="missing.txt")


@pytest.mark.parametrize("name, content", [
    ("empty.txt", b""),
    ("binary.dat", b"\x7fELF\x02\x01\x01\x00\x00\x00 some bytes\n"),
    ("latin1.txt", "caf\u00e9 cr\u00e8me\n".encode("latin-1")),
], ids=["empty", "binary", "not-utf8"])
def test_build_bad_corpus(tmp_path, name, content):
    ws = Workspace(tmp_path)
    ws.write(name, content)
    fails_cleanly(ws, "build", name, "--order", "3", code=1, mentions=name)


@pytest.mark.parametrize("value", ["0", "abc", "-3", "256"])
def test_build_bad_order(tmp_path, value):
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", "a b\n")
    fails_cleanly(ws, "build", "corpus.txt", "--order", value, code=2, mentions="--order")


@pytest.mark.parametrize("options, mentions", [
    (["--sp-model", "sp.model", "--vocab-size", "100", "--tokenizer", "word", "--max-vocab", "10"], "--sp-model"),
    (["--vocab-size", "100"], "--vocab-size"),
    (["--tokenizer", "word", "--sp-model", "sp.model"], "--sp-model"),
    (["--sp-model", "sp.model", "--min-count", "2"], "--min-count"),
    (["--tokenizer", "sentencepiece", "--vocab-size", "100", "--max-vocab", "50"], "--max-vocab"),
    (["--sp-model", "sp.model", "--vocab-size", "100"], "--vocab-size"),
])
def test_build_refuses_options_of_the_other_tokenizer(tmp_path, options, mentions):
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", "a b\n")
    ws.write("sp.model", b"never read: the options are refused first")
    fails_cleanly(ws, "build", "corpus.txt", *options, code=1, mentions=mentions)


@pytest.mark.parametrize("options", [["--min-count", "100000"], ["--max-vocab", "2"]])
def test_build_keeps_eos_and_unk_however_rare(tmp_path, options):
    ws = Workspace(tmp_path)
    ws.write("corpus.txt", "a b c\na b\n")
    ws.ok("build", "corpus.txt", "--order", "2", *options)
    assert sorted((ws.cwd / "ngteach-model" / "vocab.txt").read_text().splitlines()) == ["<eos>", "<unk>"]
    ws.ok("arpa", "--discount-fallback")  # needs <eos>


def test_build_over_a_non_model_directory(ws):
    (ws.cwd / "notes").mkdir()
    (ws.cwd / "notes" / "keep.txt").write_text("mine")
    fails_cleanly(ws, "build", "corpus.txt", "--out", "notes", code=1, mentions="notes")
    assert (ws.cwd / "notes" / "keep.txt").read_text() == "mine"


def test_rebuild_over_a_model(ws):
    ws.write("small.txt", "x y\n")
    ws.ok("build", "small.txt", "--order", "2")
    assert "small.txt" in ws.ok("info", "ngteach-model").stdout.decode()
    assert not (ws.cwd / "ngteach-model" / "counts" / "3.words.npy").exists()
    assert not [n for n in os.listdir(ws.cwd) if n.startswith(".")]


@pytest.mark.parametrize("stdout_file", [None, "ranks.bin"])
def test_rank_k_0(ws, stdout_file):
    args = ("rank", "--k", "0") if stdout_file else ("rank", "--k", "0", "-o", "ranks.bin")
    fails_cleanly(ws, *args, code=2, mentions="--k", stdout_file=stdout_file)


def test_query_k_0(ws):
    fails_cleanly(ws, "query", "a", "--k", "0", code=2, mentions="--k")


def test_rank_missing_model(tmp_path):
    ws = Workspace(tmp_path)
    fails_cleanly(ws, "rank", "-o", "ranks.bin", code=1, mentions="ngteach-model")
    fails_cleanly(ws, "rank", "-m", "elsewhere", stdout_file="ranks.bin", code=1, mentions="elsewhere")
    fails_cleanly(ws, "query", "some words", code=1, mentions="ngteach-model")
    fails_cleanly(ws, "info", "ngteach-model", code=1, mentions="ngteach-model")


INCOMPLETE = {
    "counts file deleted": lambda m: (m / "counts" / "3.cont_words.npy").unlink(),
    "counts file truncated": lambda m: (m / "counts" / "2.words.npy").write_bytes(
        (m / "counts" / "2.words.npy").read_bytes()[:-8]),
    "counts file emptied": lambda m: (m / "counts" / "1.counts.npy").write_bytes(b""),
    "tokens.npy deleted": lambda m: (m / "tokens.npy").unlink(),
    "meta.json deleted": lambda m: (m / "meta.json").unlink(),
    "meta.json corrupt": lambda m: (m / "meta.json").write_text('{"format": "ngteach-model", '),
    "vocab.txt deleted": lambda m: (m / "vocab.txt").unlink(),
    "vocab.marisa deleted": lambda m: (m / "vocab.marisa").unlink(),
}


@pytest.mark.parametrize("damage", list(INCOMPLETE))
def test_rank_incomplete_model(ws, damage):
    INCOMPLETE[damage](ws.cwd / "ngteach-model")
    fails_cleanly(ws, "rank", "--k", "5", "-o", "ranks.bin", code=1)
    fails_cleanly(ws, "info", "ngteach-model", code=1)


def test_rank_incomplete_model_to_stdout(ws):
    (ws.cwd / "ngteach-model" / "counts" / "4.words.npy").unlink()
    fails_cleanly(ws, "rank", "--k", "5", stdout_file="ranks.bin", code=1, mentions="4.words.npy")


def changed_array(name: str, change):
    def damage(model: Path):
        array = np.load(model / name)
        change(array)
        np.save(model / name, array)
    return damage


def changed_meta(**fields):
    def damage(model: Path):
        meta = json.loads((model / "meta.json").read_text())
        meta.update(fields)
        (model / "meta.json").write_text(json.dumps(meta))
    return damage


# Files of the right size with the wrong content, which once crashed rank (segmentation
# fault, traceback) or gave a ranks file info refuses -> what the error line names.
CORRUPT = {
    "offset past the table": (changed_array("counts/2.offsets.npy", lambda a: a.__setitem__(5, 4_000_000_000)),
                              "2.offsets.npy"),
    "offsets decreasing": (changed_array("counts/3.offsets.npy", lambda a: a.__setitem__(1, a[-1])), "3.offsets.npy"),
    "word beyond the vocabulary": (changed_array("counts/1.words.npy", lambda a: a.__setitem__(3, 4_000_000_000)),
                                   "1.words.npy"),
    "continuations beyond the vocabulary": (changed_array("counts/2.cont_words.npy",
                                                          lambda a: a.__setitem__(slice(None), 4_000_000_000)),
                                            "2.cont_words.npy"),
    "token beyond the vocabulary": (changed_array("tokens.npy", lambda a: a.__setitem__(10, 10**9)), "tokens.npy"),
    "corpus a string": (changed_meta(corpus="x"), "'corpus'"),
    "tokenizer a string": (changed_meta(tokenizer="word"), "'tokenizer'"),
    "n_tokens a string": (changed_meta(n_tokens="100"), "'n_tokens'"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_model_fails_cleanly(ws, name):
    damage, mentions = CORRUPT[name]
    damage(ws.cwd / "ngteach-model")
    fails_cleanly(ws, "rank", "--k", "5", "-o", "ranks.bin", code=1, mentions=mentions)
    fails_cleanly(ws, "info", "ngteach-model", code=1, mentions=mentions)


def test_rank_missing_other_corpus(ws):
    fails_cleanly(ws, "rank", "--corpus", "nothere.txt", "-o", "ranks.bin", code=1, mentions="nothere.txt")


def test_rank_binary_other_corpus(ws):
    ws.write("blob.bin", bytes(range(256)))
    fails_cleanly(ws, "rank", "--corpus", "blob.bin", "-o", "ranks.bin", code=1, mentions="blob.bin")


@pytest.mark.parametrize("target", ["no-such-dir/ranks.bin", "corpus.txt/ranks.bin"])
def test_rank_unwritable_output(ws, target):
    fails_cleanly(ws, "rank", "--k", "3", "-o", target, code=1)


def test_rank_output_is_a_directory(ws):
    (ws.cwd / "outdir").mkdir()
    fails_cleanly(ws, "rank", "--k", "3", "-o", "outdir", code=1, mentions="outdir: is a directory")
    fails_cleanly(ws, "arpa", "-o", "outdir", code=1, mentions="outdir: is a directory")
    assert os.listdir(ws.cwd / "outdir") == []


def test_k_beyond_the_vocabulary_is_capped(ws):
    ws.write("small.txt", "a b c\na b d\nb c a\n")
    ws.ok("build", "small.txt", "--order", "2", "--out", "small")
    ws.ok("arpa", "--model", "small", "-o", "small.arpa", "--discount-fallback")
    for arpa in ([], ["--arpa", "small.arpa"]):
        result = ws.ok("rank", "-m", "small", "--k", str(10**12), "-o", "r.bin", *arpa)
        assert "(k=6)" in result.stderr and RankFile(ws.cwd / "r.bin").k == 6  # the vocabulary's 6 words
        ws.ok("rank", "-m", "small", "--k", str(10**12), *arpa, stdout_file="s.bin")
        assert RankFile(ws.cwd / "s.bin").k == 6
        result = ws.ok("query", "a", "-m", "small", "--k", str(10**11), *arpa)
        assert result.stderr == "" and 3 <= len(result.stdout.splitlines()) <= 8  # two header lines, <= 6 words
    assert os.listdir(ws.tmp) == [] and not [n for n in os.listdir(ws.cwd) if n.startswith(".")]


def test_query_bos_needs_arpa(ws):
    fails_cleanly(ws, "query", "a", "--bos", code=1, mentions="--bos is for --arpa")


def test_arpa_option_naming_a_directory(ws):
    (ws.cwd / "adir").mkdir()
    fails_cleanly(ws, "rank", "--arpa", "adir", "-o", "r.bin", code=1, mentions="adir: is a directory")
    fails_cleanly(ws, "query", "a", "--arpa", "adir", code=1, mentions="adir: is a directory")


def test_arpa_values_beyond_float32_give_no_warnings(ws):
    ws.write("m.arpa", "\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1e300\t<s>\t-0.5\n-0.5\t</s>\n"
                       "-0.5\tthe\t-1e300\n\n\\2-grams:\n-0.1\tthe </s>\n\n\\end\\\n")
    for command in (["rank", "--k", "3", "-o", "r.bin"], ["query", "the", "--bos"]):
        result = ws.ok(*command, "--arpa", "m.arpa")
        assert "Warning" not in result.stderr and len(result.stderr.splitlines()) <= 1, result.stderr


@pytest.mark.parametrize("args", [("query", b"the\xff"), ("build", "corpus.txt", "-o", b"m\xffout")])
def test_arguments_that_are_not_utf8_where_text_is_needed(ws, args):
    result = fails_cleanly(ws, *args, code=1, mentions="is not valid UTF-8")
    assert "\\xff" in result.stderr and not (ws.cwd / os.fsdecode(b"m\xffout")).exists()


def test_file_names_that_are_not_utf8_still_work(ws):
    ws.write("corpus.txt", "a b c\na b d\n")
    os.rename(ws.cwd / "corpus.txt", ws.cwd / os.fsdecode(b"caf\xe9.txt"))
    ws.ok("build", b"caf\xe9.txt", "--order", "2")
    ws.ok("rank", "-o", b"r\xff.bin")
    assert b"positions" in ws.ok("info", b"r\xff.bin").stdout


def test_info_truncated_ranks_file(ws):
    ws.ok("rank", "--k", "4", "-o", "ranks.bin")
    data = (ws.cwd / "ranks.bin").read_bytes()
    ws.write("cut.bin", data[:-10])
    fails_cleanly(ws, "info", "cut.bin", code=1, mentions="cut.bin")
    ws.write("cut-header.bin", data[:30])
    fails_cleanly(ws, "info", "cut-header.bin", code=1, mentions="cut-header.bin")


def test_info_foreign_file(ws):
    ws.write("random.bin", np.random.default_rng(5).bytes(4096))
    fails_cleanly(ws, "info", "random.bin", code=1, mentions="random.bin")
    fails_cleanly(ws, "info", "corpus.txt", code=1, mentions="corpus.txt")
    fails_cleanly(ws, "info", "nothing.bin", code=1, mentions="nothing.bin")


def test_info_inconsistent_ranks_file(ws):
    ws.ok("rank", "--k", "4", "-o", "ranks.bin")
    ranks = RankFile(ws.cwd / "ranks.bin")
    offset = ranks.ids.offset
    del ranks
    data = bytearray((ws.cwd / "ranks.bin").read_bytes())
    data[offset:offset + 2] = (60000).to_bytes(2, "little")  # an id beyond the vocabulary
    ws.write("bad-ids.bin", bytes(data))
    fails_cleanly(ws, "info", "bad-ids.bin", code=1, mentions="bad-ids.bin")


def test_rank_refuses_a_terminal(ws):
    master, slave = pty.openpty()
    try:
        before = everything(ws)
        result = ws.run("rank", "--k", "3", stdout=slave)
        os.set_blocking(master, False)
        try:
            written = os.read(master, 1 << 16)
        except (BlockingIOError, OSError):
            written = b""
    finally:
        os.close(slave)
        os.close(master)
    assert_clean_error(result, 1, "terminal")
    assert written == b""
    assert everything(ws) == before


def test_outputs_get_the_users_usual_permissions(tmp_path):
    """Outputs are built in temporary places and renamed, yet must not stay private."""
    (tmp_path / "corpus.txt").write_text("a b c\na b d\n", encoding="utf-8")
    old = os.umask(0o022)
    try:
        subprocess.run([sys.executable, "-c", "from ngteach.cli import main; main()", "build", "corpus.txt"],
                       cwd=tmp_path, check=True, capture_output=True)
        subprocess.run([sys.executable, "-c", "from ngteach.cli import main; main()", "rank", "-o", "r.bin"],
                       cwd=tmp_path, check=True, capture_output=True)
    finally:
        os.umask(old)
    assert (tmp_path / "ngteach-model").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "r.bin").stat().st_mode & 0o777 == 0o644


def test_rank_min_order(ws):
    """--min-order 2 keeps the unigram level out: order 1 only ever marks a ground truth
    never seen after its context, and the header says where the backoff stopped."""
    ws.ok("rank", "--min-order", "2", "-o", "r.bin")
    ranks = RankFile(ws.cwd / "r.bin")
    assert ranks.header["teacher"]["min_order"] == 2
    assert not np.any(np.asarray(ranks.orders)[:, 1:] == 1)
    assert np.any(np.asarray(ranks.orders)[:, 1:] == 0)  # rows now end in padding
    fails_cleanly(ws, "rank", "--min-order", "9", "-o", "bad.bin", mentions="--min-order")


def test_arpa_writes_what_kenlm_loads_with_the_reference_scores(ws):
    """`ngteach arpa` estimates Kneser-Ney from the model's corpus; kenlm's scores of its
    lines equal those of the naive estimator of reference_kn.py."""
    import kenlm
    from reference_kn import estimate, score_sentence, sentences_of

    result = ws.ok("arpa", "--order", "3", "-o", "m.arpa")
    assert "wrote m.arpa: order 3" in result.stderr
    model = kenlm.Model(str(ws.cwd / "m.arpa"))
    assert model.order == 3
    sentences = sentences_of(tokenize_file(ws.cwd / "corpus.txt"))
    entries, _ = estimate(sentences, 3, fallback=(0.5, 1.0, 1.5))
    for sentence in sentences[:50]:
        words = sentence[1:-1]
        assert model.score(" ".join(words), bos=True, eos=True) == pytest.approx(
            score_sentence(entries, words), abs=1e-4)
    # its ranks carry log-probabilities: info says how much the teacher leaves outside its top k
    ws.ok("rank", "--teacher", "arpa:m.arpa", "--k", "5", "--scores", "-o", "kn.bin")
    mean = RankFile(ws.cwd / "kn.bin").leftover_mass()["mean"]
    assert 0 < mean < 1
    assert f"leftover   probability outside the top k: mean {mean:.3f}, median" in ws.ok("info", "kn.bin").stdout.decode()


def test_arpa_discount_fallback(ws):
    """A corpus too small for Kneser-Ney discounts fails in one line, or warns and
    uses lmplz's fallback discounts with --discount-fallback."""
    ws.write("tiny.txt", "a b\nb a\n")
    ws.ok("build", "tiny.txt", "--order", "2", "--out", "tiny-model")
    fails_cleanly(ws, "arpa", "--model", "tiny-model", "-o", "tiny.arpa", mentions="discount")
    assert not (ws.cwd / "tiny.arpa").exists()
    result = ws.ok("arpa", "--model", "tiny-model", "-o", "tiny.arpa", "--discount-fallback")
    assert "ngteach: warning:" in result.stderr and (ws.cwd / "tiny.arpa").exists()
    fails_cleanly(ws, "arpa", "-o", "no/such/dir/m.arpa", mentions="no such directory")


def model_files(directory: Path) -> dict[str, bytes]:
    """A model directory's files, meta.json without the corpus path it records."""
    files = {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
    meta = json.loads(files.pop("meta.json"))
    meta["corpus"].pop("path")
    return {**files, "meta.json": json.dumps(meta).encode()}


def test_pipes_and_compressed_corpora_build_the_plain_files_model(ws, wt2_valid):
    import bz2
    import gzip
    import lzma

    text = head_lines(wt2_valid, 5000).encode("utf-8")
    ws.write("plain.txt", text)
    for name, compress in (("c.txt.gz", gzip.compress), ("c.txt.bz2", bz2.compress), ("c.txt.xz", lzma.compress)):
        ws.write(name, compress(text))
    ws.ok("build", "plain.txt", "--order", "3", "--out", "plain")
    expected = model_files(ws.cwd / "plain")
    for name in ("c.txt.gz", "c.txt.bz2", "c.txt.xz"):
        ws.ok("build", name, "--order", "3", "--out", name + ".model")
        assert model_files(ws.cwd / (name + ".model")) == expected, name
    piped = subprocess.run([*COMMAND, "build", "-", "--order", "3", "--out", "piped"], cwd=ws.cwd, env=ws.env,
                           input=text, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    assert model_files(ws.cwd / "piped") == expected
    assert json.loads((ws.cwd / "piped/meta.json").read_text())["corpus"]["path"] == "-"
    # and a process substitution, a pipe with a name
    subprocess.run(["bash", "-c", f"{' '.join(COMMAND)} build <(zcat c.txt.gz) --order 3 --out fifo"], cwd=ws.cwd,
                   env=ws.env, check=True, capture_output=True)
    assert model_files(ws.cwd / "fifo") == expected
    # rank --corpus reads them too: the same rows as from the plain file
    ws.ok("rank", "-m", "plain", "--corpus", "plain.txt", "-o", "plain.bin")
    ws.ok("rank", "-m", "plain", "--corpus", "c.txt.xz", "-o", "xz.bin")
    piped = subprocess.run([*COMMAND, "rank", "-m", "plain", "--corpus", "-", "-o", "piped.bin"], cwd=ws.cwd,
                           env=ws.env, input=text, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    for other in ("xz.bin", "piped.bin"):
        assert np.array_equal(RankFile(ws.cwd / other).ids, RankFile(ws.cwd / "plain.bin").ids)
    assert not [p for p in ws.listing() if ".ngteach-input." in p] and not list(ws.tmp.iterdir())


def test_damaged_compressed_and_empty_piped_corpora_are_one_line(ws):
    import gzip

    ws.write("cut.txt.gz", gzip.compress(b"some words\n" * 1000)[:60])
    before = ws.listing() | {"plain.txt.bz2"}
    assert_clean_error(ws.run("build", "cut.txt.gz"), 1, "cut.txt.gz: a damaged or truncated .gz file")
    ws.write("plain.txt.bz2", b"not bzip2 at all\n")
    assert_clean_error(ws.run("build", "plain.txt.bz2"), 1, "plain.txt.bz2: a damaged or truncated .bz2 file")
    empty = subprocess.run([*COMMAND, "build", "-"], cwd=ws.cwd, env=ws.env, input=b"", capture_output=True)
    assert empty.returncode == 1 and empty.stderr == b"ngteach: error: standard input: the input is empty\n"
    assert ws.listing() == before  # nothing written, nothing left behind


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_path_and_leaves_nothing(ws, full_disk):
    """rank (to a file or standard output), arpa, build and distill on a disk that fills up."""
    for args, says in ((["rank", "-o", str(full_disk / "r.bin")], f"{full_disk}/r.bin: cannot create a ranks file"),
                       (["arpa", "-o", str(full_disk / "m.arpa"), "--discount-fallback"],
                        f"{full_disk}/m.arpa: cannot write the ARPA file (No space left on device)"),
                       (["build", "corpus.txt", "--out", str(full_disk / "model")],
                        f"{full_disk}/model: cannot write the model directory")):
        assert_clean_error(ws.run(*args), 1, says)
        assert list(full_disk.iterdir()) == [], args  # no temporary file
    # distill says what it does before it fails: its last line is the error, and no run folder is stranded
    result = ws.run("distill", "--size", "tiny", "--epochs", "1", "--max-tokens", "2000", "--loss", "ce", "--out",
                    str(full_disk / "run"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"ngteach: error: {full_disk}/run/checkpoints/best.pt: cannot "
                                                     "write the checkpoint (")
    assert list(full_disk.iterdir()) == []
    with open(full_disk / "out.bin", "wb") as out:
        result = subprocess.run([*COMMAND, "rank"], cwd=ws.cwd, env=ws.env, stdout=out, stderr=subprocess.PIPE)
    assert result.returncode == 1 and result.stderr.decode() == (
        "ngteach: error: standard output: cannot write the ranks file (No space left on device)\n")
