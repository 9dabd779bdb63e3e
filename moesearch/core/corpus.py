"""The training text: bytes from files on this machine, split deterministically, hashed for provenance.

Default: the Python standard library's top-level source files, real text present wherever Python is.
Tokens are bytes (vocabulary 256), so no tokenizer is downloaded.

The text is memory-mapped, never held whole: the files are concatenated once into a cache file
(`cache_dir()`, keyed by their paths, sizes and modification times, with the text's sha256 beside it), and
the train and held-out parts are views of it (`Part`), so a 10 GB corpus costs the pages a training
touches, not 10 GB per rank.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moesearch.core.errors import InputError

VOCAB_SIZE = 256
_BLOCK = 4096  # the split unit: every VAL_EVERY-th block of the stream is held out
_MIN_BLOCKS = 200  # small corpora get smaller blocks, so that 5% is still held out
_VAL_EVERY = 20  # 5% validation, spread through the whole corpus rather than its alphabetical tail


@dataclass(frozen=True)
class Part:
    """The training or the held-out part of the text, as a view: position p of the part is the stream's
    byte `at(p)`, its blocks in order, so a window is cut from the memory-mapped stream without a copy of
    the part."""

    stream: np.ndarray  # every byte, uint8, memory-mapped
    block: int  # the split unit (`split`)
    held_out: bool

    def __len__(self) -> int:
        n, block = len(self.stream), self.block
        blocks = -(-n // block)
        short = blocks * block - n  # the last block may be short
        val = blocks // _VAL_EVERY * block - (short if blocks % _VAL_EVERY == 0 and blocks else 0)
        return val if self.held_out else n - val

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The stream's positions of the part's positions."""
        k, offset = np.divmod(positions, self.block)  # the part's k-th block
        if self.held_out:
            b = k * _VAL_EVERY + _VAL_EVERY - 1
        else:
            b = k // (_VAL_EVERY - 1) * _VAL_EVERY + k % (_VAL_EVERY - 1)
        return b * self.block + offset

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """The part's bytes [s, s + length) for each start s, one row each (uint8)."""
        return self.stream[self.at(starts[:, None] + np.arange(length))]


@dataclass(frozen=True)
class Corpus:
    train: Part
    val: Part
    sha256: str  # of the files' bytes in reading order

    def check_fits(self, seq_len: int) -> None:
        if min(len(self.train), len(self.val)) <= seq_len:
            raise InputError(
                f"--data: {len(self.train) + len(self.val):,} bytes of text is too little for seq_len {seq_len}; "
                f"give at least {(seq_len + 1) * _VAL_EVERY * 2:,} bytes"
            )


def files(spec: str | None) -> list[Path]:
    """The files a --data value names: a file, every file under a folder, or a glob; sorted."""
    if spec is None:
        return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not found:
        raise InputError(f"--data: {spec!r} is not a file, a folder with files, or a glob matching files")
    return found


def load(spec: str | None) -> Corpus:
    """Map, hash and split the corpus. The same files give the same split on every machine."""
    stream, sha256 = _mapped(files(spec))
    block = max(1, min(_BLOCK, len(stream) // _MIN_BLOCKS))
    return Corpus(Part(stream, block, False), Part(stream, block, True), sha256)


def cache_dir() -> Path:
    """Where the concatenated texts are kept: $MOESEARCH_CACHE, else the user's cache folder."""
    if explicit := os.environ.get("MOESEARCH_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moesearch" / "corpus"


def _mapped(paths: list[Path]) -> tuple[np.ndarray, str]:
    """The files' bytes joined by newlines, memory-mapped, and the sha256 of the files' bytes. One file is
    mapped where it is (its hash cached); several are joined once into the cache (made atomically: every rank
    may race to make it, and each writes the same bytes)."""
    try:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    except OSError as e:
        raise InputError(f"--data: cannot read {e.filename}: {e.strerror}") from None
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:32]
    folder = cache_dir()
    meta = folder / f"{key}.json"
    data = paths[0] if len(paths) == 1 else folder / f"{key}.u8"
    if not (meta.is_file() and data.is_file()):
        _build(paths, folder, None if len(paths) == 1 else data, meta)
    sha256, size = (json.loads(meta.read_text())[k] for k in ("sha256", "bytes"))
    stream = np.memmap(data, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    return stream, sha256


def _build(paths: list[Path], folder: Path, data: Path | None, meta: Path) -> None:
    """Hash the files in chunks, joining them into `data` (None: one file, mapped where it is), then write
    the hash beside it; each written under a temporary name and renamed, so a reader sees all or nothing."""
    digest = hashlib.sha256()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{meta.stem}.u8.{os.getpid()}"
    with open(tmp if data else os.devnull, "wb") as out:
        size = 0
        for i, path in enumerate(paths):
            if i:
                out.write(b"\n")
                size += 1
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise InputError(f"--data: cannot read {path}: {e.strerror}") from None
    if data:
        os.replace(tmp, data)
    tmp_meta = folder / f".{meta.name}.{os.getpid()}"
    tmp_meta.write_text(json.dumps({"sha256": digest.hexdigest(), "bytes": size, "files": len(paths)}))
    os.replace(tmp_meta, meta)
