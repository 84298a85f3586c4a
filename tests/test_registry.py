"""Named corpora: the local mirror, the cache, and downloads from a loopback server
(no test touches the network)."""
from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from corpora import NgteachError
from corpora import registry
from corpora.registry import Source, default_cache_dir, is_registry_name, parse_spec, resolve_corpus

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
needs_mirror = pytest.mark.skipif(not (SHARED / "README.md").is_file(), reason="no shared corpus mirror")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    """Tests say where the mirror and cache are; the developer's settings must not leak in."""
    for name in (registry.DATA_DIR_ENV, registry.CACHE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


def readme_sha256() -> dict[str, str]:
    """``relative path -> sha256`` as listed in the mirror's README."""
    text = (SHARED / "README.md").read_text(encoding="utf-8")
    return {path: digest for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- specs -------------------------------------------------------------------------


def test_parse_spec_defaults_to_train_and_ignores_case():
    assert parse_spec("wikitext-2") == ("wikitext-2", "train")
    assert parse_spec("WikiText-103:valid") == ("wikitext-103", "valid")
    assert parse_spec("ptb:test") == ("ptb", "test")


def test_every_corpus_has_the_three_splits_and_known_checksum_kinds():
    for splits in registry.CORPORA.values():
        assert sorted(splits) == ["test", "train", "valid"]
        for source in splits.values():
            algorithm, _, digest = source.checksum.partition(":")
            assert len(digest) == hashlib.new(algorithm).digest_size * 2


def test_unknown_name_and_split_are_errors():
    with pytest.raises(NgteachError, match=r"unknown corpus 'wikitext-3'.*wikitext-2"):
        resolve_corpus("wikitext-3")
    with pytest.raises(NgteachError, match=r"ptb has no split 'dev'.*valid"):
        resolve_corpus("ptb:dev")


def test_is_registry_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_registry_name("wikitext-2:valid")
    assert is_registry_name("ptb")
    assert is_registry_name("ptb:nonsense")  # a name, so resolve_corpus explains the bad split
    assert not is_registry_name("corpus.txt")
    assert not is_registry_name("wikitext-3:valid")
    (tmp_path / "ptb").write_text("a local file\n")
    assert not is_registry_name("ptb")  # an existing path wins over a name


# --- mirror ------------------------------------------------------------------------


@needs_mirror
@pytest.mark.parametrize("split", ["valid", "test"])
def test_mirror_file_is_used_and_matches_the_readme(split):
    path = resolve_corpus(f"wikitext-2:{split}", data_dir=SHARED)
    assert path == SHARED / "wikitext-2" / f"{split}.txt"
    assert sha256(path.read_bytes()) == readme_sha256()[f"wikitext-2/{split}.txt"]


@needs_mirror
def test_mirror_from_environment(monkeypatch):
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(SHARED))
    assert resolve_corpus("wikitext-2:test") == SHARED / "wikitext-2" / "test.txt"


@needs_mirror
def test_mirror_without_the_file_is_an_error_not_a_download(tmp_path):
    with pytest.raises(NgteachError, match=re.escape(str(SHARED / "wikitext-2" / "train.txt"))):
        resolve_corpus("wikitext-2", data_dir=SHARED, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_mirror_file_with_wrong_checksum(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "valid.txt").write_bytes(b"not the penn treebank\n")
    got = hashlib.md5(b"not the penn treebank\n").hexdigest()
    expected = registry.CORPORA["ptb"]["valid"].checksum
    with pytest.raises(NgteachError) as error:
        resolve_corpus("ptb:valid", data_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "ptb" / "valid.txt") in message and expected in message and f"md5:{got}" in message


# --- cache location ----------------------------------------------------------------


def test_default_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ngteach"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ngteach"
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


# --- downloads from a loopback server ------------------------------------------------

TRAIN = "first line of training text\n\nsecond paragraph\n"
VALID = "a validation line\n"
TEST = "the test split, served as plain text\n"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass  # keep test output clean


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server over ``tmp_path/served``: a toy zip, a plain text file and a
    broken zip. Yields (base url, list of paths requested)."""
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "toy.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("toy/wiki.train.tokens", TRAIN)
        zf.writestr("toy/wiki.valid.tokens", VALID)
    (served / "toy.test.txt").write_text(TEST)
    (served / "broken.zip").write_bytes((served / "toy.zip").read_bytes()[:-40])
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def toy_corpus(monkeypatch, zip_url: str, txt_url: str, **checksums: str) -> None:
    """Register corpus ``toy``: train and valid in the zip at ``zip_url``, test as plain
    text; correct checksums unless overridden."""
    sums = {
        "train": f"sha256:{sha256(TRAIN.encode())}",
        "valid": f"md5:{hashlib.md5(VALID.encode()).hexdigest()}",
        "test": f"sha1:{hashlib.sha1(TEST.encode()).hexdigest()}",
        **checksums,
    }
    zip_urls = (zip_url,) if isinstance(zip_url, str) else zip_url
    monkeypatch.setitem(
        registry.CORPORA,
        "toy",
        {
            "train": Source(zip_urls, sums["train"], "toy/wiki.train.tokens"),
            "valid": Source(zip_urls, sums["valid"], "toy/wiki.valid.tokens"),
            "test": Source((txt_url,), sums["test"]),
        },
    )


def test_download_extracts_all_splits_of_the_archive_and_reuses_the_cache(server, tmp_path, monkeypatch):
    base, requests = server
    toy_corpus(monkeypatch, f"{base}/toy.zip", f"{base}/toy.test.txt")
    cache = tmp_path / "cache"
    received: list[int] = []
    path = resolve_corpus("toy:valid", cache_dir=cache, on_bytes=received.append)
    assert path == cache / "toy" / "valid.txt"
    assert path.read_text() == VALID
    assert (cache / "toy" / "train.txt").read_text() == TRAIN  # extracted from the same download
    assert sum(received) == (tmp_path / "served" / "toy.zip").stat().st_size
    assert requests == ["/toy.zip"]

    assert resolve_corpus("toy", cache_dir=cache) == cache / "toy" / "train.txt"
    assert resolve_corpus("toy:valid", cache_dir=cache, download=False) == path
    assert requests == ["/toy.zip"]  # both from the cache
    assert sorted(p.name for p in cache.rglob("*")) == ["toy", "train.txt", "valid.txt"]


def test_download_plain_text_split(server, tmp_path, monkeypatch):
    base, requests = server
    toy_corpus(monkeypatch, f"{base}/toy.zip", f"{base}/toy.test.txt")
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    path = resolve_corpus("toy:test")
    assert path == tmp_path / "cache" / "toy" / "test.txt"
    assert path.read_text() == TEST
    assert requests == ["/toy.test.txt"]


def test_download_falls_back_to_the_next_url(server, tmp_path, monkeypatch):
    base, requests = server
    toy_corpus(monkeypatch, (f"{base}/gone.zip", f"{base}/toy.zip"), f"{base}/toy.test.txt")
    assert resolve_corpus("toy:train", cache_dir=tmp_path / "cache").read_text() == TRAIN
    assert requests == ["/gone.zip", "/toy.zip"]


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, tmp_path, monkeypatch):
    base, _ = server
    wrong = "sha256:" + "0" * 64
    toy_corpus(monkeypatch, f"{base}/toy.zip", f"{base}/toy.test.txt", valid=wrong, test=wrong)
    cache = tmp_path / "cache"
    mismatch = r"checksum mismatch \(expected sha256:0{64}, got sha256:[0-9a-f]{64}\)"
    for spec in ("toy:train", "toy:test"):  # train is fine, but its sibling valid is not
        with pytest.raises(NgteachError, match=mismatch):
            resolve_corpus(spec, cache_dir=cache)
        assert list(cache.rglob("*")) == []


@pytest.mark.parametrize(
    "zip_name, member, message",
    [
        ("broken.zip", "toy/wiki.train.tokens", "corrupt zip archive"),
        ("toy.test.txt", "toy/wiki.train.tokens", "corrupt zip archive"),
        ("toy.zip", "toy/wiki.dev.tokens", "the archive has no toy/wiki.dev.tokens"),
        ("missing.zip", "toy/wiki.train.tokens", r"missing.zip: download failed \(HTTP 404"),
    ],
)
def test_bad_archives_are_one_line_errors(server, tmp_path, monkeypatch, zip_name, member, message):
    base, _ = server
    source = Source((f"{base}/{zip_name}",), f"sha256:{sha256(TRAIN.encode())}", member)
    monkeypatch.setitem(registry.CORPORA, "toy", {"train": source, "valid": source, "test": source})
    cache = tmp_path / "cache"
    with pytest.raises(NgteachError, match=message) as error:
        resolve_corpus("toy", cache_dir=cache)
    assert "\n" not in str(error.value)
    assert list(cache.rglob("*")) == []


def test_unreachable_host_is_a_download_error(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    url = f"http://127.0.0.1:{port}/toy.txt"
    source = Source((url,), "md5:" + "0" * 32)
    monkeypatch.setitem(registry.CORPORA, "toy", {"train": source, "valid": source, "test": source})
    with pytest.raises(NgteachError, match=re.escape(url) + r": download failed \(.*refused") as error:
        resolve_corpus("toy", cache_dir=tmp_path / "cache")
    assert str(error.value).endswith("can be read instead with --data-dir DIR or NGTEACH_DATA_DIR=DIR")


def test_no_download_when_switched_off(tmp_path):
    with pytest.raises(NgteachError, match="not in the cache .* downloading is off"):
        resolve_corpus("ptb:valid", cache_dir=tmp_path, download=False)
    assert not any(tmp_path.iterdir())


def test_builtin_python_docs_needs_no_download(tmp_path, monkeypatch):
    """``python-docs`` is written from the running Python's own documentation: its
    three splits partition the lines of the help topics, in order, with no overlap."""
    from pydoc_data.topics import topics

    monkeypatch.delenv("NGTEACH_DATA_DIR", raising=False)
    train = resolve_corpus("python-docs", cache_dir=tmp_path, download=False)
    valid = resolve_corpus("python-docs:valid", cache_dir=tmp_path, download=False)
    test = resolve_corpus("python-docs:test", cache_dir=tmp_path, download=False)
    assert is_registry_name("python-docs:test")
    expected = "\n".join(topics[name].strip("\n") for name in sorted(topics)).split("\n")
    got = [path.read_text(encoding="utf-8").split("\n")[:-1] for path in (train, valid, test)]
    assert got[0] + got[1] + got[2] == expected
    assert len(got[0]) == len(expected) * 8 // 10
    assert sum(len(line.split()) + 1 for line in got[0]) > 50_000
    # Same Python, same bytes.
    first = train.read_bytes()
    assert resolve_corpus("python-docs", cache_dir=tmp_path).read_bytes() == first
