"""The training tokens: text or token files on this machine, split deterministically, hashed for provenance.

Default: the Python standard library's top-level source files, real text present wherever Python is.
Text is read as bytes (vocabulary 256), so no tokenizer is downloaded; `core/tokenize.py` turns text into a
token file with a tokenizer of the user's.

Token files are told from text by name (`token_file`): `.npy`, a numpy array of token ids (its dtype from
its header), and `.bin`, a token array as nanoGPT writes it (raw uint16) or as modded-nanogpt and llm.c do
(a 256 x int32 header starting 20240520, its version giving uint16 (1) or uint32 (2), then the tokens). The
vocabulary is the largest token + 1, counted once.

Everything is memory-mapped, never held whole: several text files are concatenated once into a cache file
(`cache_dir()`, keyed by their paths, sizes and modification times, with the sha256 beside it), token files
are mapped where they are (`Shards` joins several without a copy), and the train and held-out parts are
views (`Part`), so a 10 GB corpus costs the pages a training touches, not 10 GB per rank.
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

VOCAB_SIZE = 256  # text is read as bytes
HEADER_MAGIC = 20240520  # the first int32 of a modded-nanogpt / llm.c token shard
_HEADER_BYTES = 256 * 4
_HEADER_DTYPES = {1: np.uint16, 2: np.uint32}  # the header's version: GPT-2's tokens, Llama 3's
TOKEN_SUFFIXES = (".npy", ".bin")
_BLOCK = 4096  # the split unit: every VAL_EVERY-th block of the stream is held out
_MIN_BLOCKS = 200  # small corpora get smaller blocks, so that 5% is still held out
_VAL_EVERY = 20  # 5% validation, spread through the whole corpus rather than its alphabetical tail


@dataclass(frozen=True)
class Part:
    """The training or the held-out part of the corpus, as a view: position p of the part is the stream's
    token `at(p)`, its blocks in order, so a window is cut from the memory-mapped stream without a copy of
    the part."""

    stream: np.ndarray | Shards  # every token (a byte of text, uint8), memory-mapped
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
        """The part's tokens [s, s + length) for each start s, one row each (the stream's integer dtype)."""
        return self.stream[self.at(starts[:, None] + np.arange(length))]


@dataclass(frozen=True)
class Shards:
    """Several token files as one stream without a copy: position p is file i's token p - starts[i]."""

    arrays: tuple[np.ndarray, ...]  # each memory-mapped
    starts: np.ndarray  # int64, len(arrays) + 1: where each file begins in the stream, then its length

    @classmethod
    def of(cls, arrays: list[np.ndarray]) -> Shards:
        return cls(tuple(arrays), np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        which = np.searchsorted(self.starts, positions, side="right") - 1
        out = np.empty(np.shape(positions), np.int64)
        for i in np.unique(which):  # one pass per file the batch's windows touch
            here = which == i
            out[here] = self.arrays[i][positions[here] - self.starts[i]]
        return out


@dataclass(frozen=True)
class Corpus:
    train: Part
    val: Part
    sha256: str  # of the files' bytes in reading order
    vocab_size: int = VOCAB_SIZE  # bytes; a token file's largest token + 1
    tokens: bool = False  # token files, not text

    def check_fits(self, seq_len: int) -> None:
        if min(len(self.train), len(self.val)) <= seq_len:
            unit = "tokens" if self.tokens else "bytes of text"
            raise InputError(
                f"--data: {len(self.train) + len(self.val):,} {unit} is too little for seq_len {seq_len}; "
                f"give at least {(seq_len + 1) * _VAL_EVERY * 2:,} {unit}"
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


def load(spec: str | None, counted: bool = True) -> Corpus:
    """Map, hash and split the corpus. The same files give the same split on every machine.

    counted=False (the ranks, which need neither): token files are mapped only, not hashed and scanned for
    their vocabulary (sha256 "" and vocab_size 0), so no rank of a node reads every shard whole first."""
    paths = files(spec)
    tokens = [p for p in paths if token_file(p)]
    if tokens and len(tokens) < len(paths):
        text = next(p for p in paths if not token_file(p))
        raise InputError(
            f"--data: {spec!r} mixes token files ({tokens[0].name}) and text ({text.name}); allowed: one kind "
            f"(token files end in {' or '.join(TOKEN_SUFFIXES)})"
        )
    if tokens:
        stream, meta = _token_stream(paths, counted)
    else:
        stream, meta = _mapped(paths)
    block = max(1, min(_BLOCK, len(stream) // _MIN_BLOCKS))
    return Corpus(
        Part(stream, block, False),
        Part(stream, block, True),
        meta["sha256"],
        meta.get("vocab", VOCAB_SIZE),
        bool(tokens),
    )


def token_file(path: Path) -> bool:
    """Whether `path` holds token ids rather than text: told by its suffix (the module's docstring)."""
    return path.suffix in TOKEN_SUFFIXES


def text_bytes(spec: str | None) -> tuple[np.ndarray, str]:
    """The text `spec` names as one memory-mapped byte stream (files joined by newlines) and its sha256."""
    stream, meta = _mapped(files(spec))
    return stream, meta["sha256"]


def token_array(path: Path) -> np.ndarray:
    """A token file's ids, memory-mapped (the module's docstring says how each kind is read)."""
    try:
        if path.suffix == ".npy":
            array = np.load(path, mmap_mode="r")
            if array.ndim != 1 or array.dtype.kind not in "ui":
                raise InputError(
                    f"--data: {path} holds a {array.dtype} array of shape {array.shape}; allowed: one "
                    "dimension of integer token ids"
                )
            if not array.dtype.isnative:
                raise InputError(
                    f"--data: {path} is stored in the other byte order ({array.dtype.str}); allowed: this machine's "
                    f"(np.save(path, ids.astype({array.dtype.newbyteorder('=').name!r})))"
                )
            return array
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(_HEADER_BYTES).ljust(_HEADER_BYTES, b"\0"), "<i4")
    except (OSError, ValueError) as e:
        raise InputError(f"--data: cannot read {path} as tokens: {e}") from None
    if header[0] == HEADER_MAGIC:
        version, count = int(header[1]), int(header[2])
        if version not in _HEADER_DTYPES:
            raise InputError(f"--data: {path} has header version {version}; allowed: 1 (uint16) or 2 (uint32)")
        dtype = np.dtype(_HEADER_DTYPES[version])
        if size != _HEADER_BYTES + count * dtype.itemsize:
            raise InputError(
                f"--data: {path} is {size:,} bytes, but its header promises {count:,} {dtype} tokens after 1,024 "
                "bytes; the file is cut short or not a token shard"
            )
        return np.memmap(path, dtype=dtype, mode="r", offset=_HEADER_BYTES, shape=(count,))
    if size % 2:
        raise InputError(f"--data: {path} has an odd size ({size:,} bytes); a raw .bin holds uint16 tokens (nanoGPT)")
    return np.memmap(path, dtype=np.uint16, mode="r") if size else np.zeros(0, np.uint16)


def cache_dir() -> Path:
    """Where the concatenated texts are kept: $MOESEARCH_CACHE, else the user's cache folder."""
    if explicit := os.environ.get("MOESEARCH_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moesearch" / "corpus"


def _key(paths: list[Path]) -> str:
    """The cache's name for these files as they are now: their paths, sizes and modification times."""
    try:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    except OSError as e:
        raise InputError(f"--data: cannot read {e.filename}: {e.strerror}") from None
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:32]


def _mapped(paths: list[Path]) -> tuple[np.ndarray, dict]:
    """The files' bytes joined by newlines, memory-mapped, and their cached facts (the sha256 of the files'
    bytes). One file is mapped where it is (its hash cached); several are joined once into the cache (made
    atomically: every rank may race to make it, and each writes the same bytes)."""
    key, folder = _key(paths), cache_dir()
    meta = folder / f"{key}.json"
    data = paths[0] if len(paths) == 1 else folder / f"{key}.u8"
    if not (meta.is_file() and data.is_file()):
        _build(paths, folder, None if len(paths) == 1 else data, meta)
    facts = json.loads(meta.read_text())
    stream = np.memmap(data, dtype=np.uint8, mode="r") if facts["bytes"] else np.zeros(0, np.uint8)
    return stream, facts


def _token_stream(paths: list[Path], counted: bool = True) -> tuple[np.ndarray | Shards, dict]:
    """The token files as one stream, mapped where they are, and their cached facts: the sha256 of their
    bytes and the vocabulary (largest token + 1), counted once in chunks (made atomically, as `_build`)."""
    arrays = [token_array(p) for p in paths]
    stream = arrays[0] if len(arrays) == 1 else Shards.of(arrays)
    if not counted:
        return stream, {"sha256": "", "vocab": 0}
    folder = cache_dir()
    meta = folder / f"{_key(paths)}.tokens.json"
    if not meta.is_file():
        digest, largest = hashlib.sha256(), -1
        for path, array in zip(paths, arrays, strict=True):
            with open(path, "rb") as f:
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
            for start in range(0, len(array), 1 << 24):
                chunk = array[start : start + (1 << 24)]
                if chunk.min() < 0:
                    raise InputError(f"--data: {path} holds negative token ids; allowed: ids from 0")
                largest = max(largest, int(chunk.max()))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{meta.name}.{os.getpid()}"
        tmp.write_text(json.dumps({"sha256": digest.hexdigest(), "vocab": largest + 1, "files": len(paths)}))
        os.replace(tmp, meta)
    return stream, json.loads(meta.read_text())


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
