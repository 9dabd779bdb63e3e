"""Text under a tokenizer of the user's, tokenized once into a token file the ranks map like any other.

`--tokenizer tokenizer.json` (a Hugging Face `tokenizers` file, read locally: nothing is downloaded) turns
the --data text into `<results>/tokens/<text sha256>-<tokenizer sha256>.bin`, a token shard in the llm.c
format `core/corpus.py` reads (uint16 where the vocabulary fits, else uint32). The name is keyed by the
hashes of both, so a changed text or tokenizer makes a new file and the same pair is tokenized once, by
whichever process gets there first (written under a temporary name and renamed). The vocabulary is the
tokenizer's. Light: numpy, and `tokenizers` (the [tokenizer] extra) only when called.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moesearch.core import corpus
from moesearch.core.errors import InputError

_CHUNK = 1 << 20  # bytes of text per piece, cut after a newline where one comes within the next _CHUNK bytes,
# else at the start of a UTF-8 character
_BATCH = 32  # pieces per encode_batch call, which the Rust side encodes in parallel


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer file, read once: its hash names the token files it makes."""

    sha256: str
    encoder: Any  # tokenizers.Tokenizer

    @property
    def vocab(self) -> int:
        """The vocabulary, added tokens included: every id it can give."""
        return self.encoder.get_vocab_size(with_added_tokens=True)


def load(path: str) -> Tokenizer:
    """The tokenizer file at `path`; InputError where it cannot be read or is not one."""
    try:
        from tokenizers import Tokenizer as Encoder
    except ImportError:
        raise InputError(
            "--tokenizer: the tokenizers package is not installed; install it with `pip install -e '.[tokenizer]'`"
        ) from None
    try:
        raw = Path(path).read_bytes()
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--tokenizer: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        encoder = Encoder.from_str(text)
    except Exception as e:  # tokenizers raises a bare Exception for a file that is not a tokenizer
        raise InputError(f"--tokenizer: {path} is not a Hugging Face tokenizer file ({e})") from None
    return Tokenizer(hashlib.sha256(raw).hexdigest(), encoder)


def tokenized(data: str | None, tokenizer: Tokenizer, folder: Path, dry_run: bool = False) -> Path:
    """The token file of the text `data` names (None: the default text) under `tokenizer`, made if missing
    (a dry run only names it)."""
    text, text_sha = corpus.text_bytes(data)
    target = folder / f"{text_sha[:16]}-{tokenizer.sha256[:16]}.bin"
    if not target.is_file() and not dry_run:
        _write(tokenizer, text, target)
    return target


def _write(tokenizer: Tokenizer, text: np.ndarray, target: Path) -> None:
    """Tokenize `text` piece by piece into `target`, a llm.c token shard, without holding the text or tokens."""
    version, dtype = (1, np.uint16) if tokenizer.vocab <= 1 << 16 else (2, np.uint32)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}"
    count = 0
    with open(tmp, "wb") as out:
        out.write(bytes(4 * 256))  # the header, written once the count is known
        for batch in _batches(text):
            for encoding in tokenizer.encoder.encode_batch(batch, add_special_tokens=False):
                ids = np.asarray(encoding.ids, dtype=dtype)
                out.write(ids.tobytes())
                count += len(ids)
        header = np.zeros(256, "<i4")
        header[:3] = corpus.HEADER_MAGIC, version, count
        out.seek(0)
        out.write(header.tobytes())
    os.replace(tmp, target)
    # tokenizers' thread pool was used: say so, or it warns in every process this one forks later
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _batches(text: np.ndarray) -> Iterator[list[str]]:
    """The text as lists of about _CHUNK-byte pieces, each ending at a newline (or the text's end)."""
    batch, start = [], 0
    while start < len(text):
        end = min(start + _CHUNK, len(text))
        if end < len(text):
            newline = np.flatnonzero(text[end : end + _CHUNK] == ord("\n"))
            end = end + int(newline[0]) + 1 if len(newline) else min(end + _CHUNK, len(text))
            while end < len(text) and text[end] & 0xC0 == 0x80:  # no newline near: back to a character's start
                end -= 1
        batch.append(bytes(text[start:end]).decode("utf-8", errors="replace"))
        start = end
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
