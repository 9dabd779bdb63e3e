"""The training text: bytes from files on this machine, split deterministically, hashed for provenance.

Default: the Python standard library's top-level source files, real text present wherever Python is.
Tokens are bytes (vocabulary 256), so no tokenizer is downloaded.
"""

from __future__ import annotations

import glob
import hashlib
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
class Corpus:
    train: np.ndarray  # uint8 tokens
    val: np.ndarray
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
    """Read, hash and split the corpus. The same files give the same split on every machine."""
    digest = hashlib.sha256()
    chunks = []
    for path in files(spec):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"--data: cannot read {path}: {e.strerror}") from None
        digest.update(data)
        chunks.append(data)
    stream = np.frombuffer(b"\n".join(chunks), dtype=np.uint8)
    del chunks
    return Corpus(*split(stream), sha256=digest.hexdigest())


def split(stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): every _VAL_EVERY-th block of the stream held out. The mask costs one byte per byte of
    text (one flag per block, repeated), not the eight of an index per byte."""
    block = max(1, min(_BLOCK, len(stream) // _MIN_BLOCKS))
    blocks = -(-len(stream) // block)
    held_out = np.repeat(np.arange(blocks) % _VAL_EVERY == _VAL_EVERY - 1, block)[: len(stream)]
    return stream[~held_out], stream[held_out]
