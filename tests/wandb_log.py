"""An offline W&B run read back: its run record, config, history rows and summary, from the run's .wandb
file (a LevelDB-style log of protobuf records, the format `wandb sync` uploads). wandb ships no reader of
its own since its Go core took over, so the tests read the log as its format says."""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK = 32 * 1024  # records never straddle a block's 7-byte tail
_HEADER = 7  # the file's: ":W&B", magic 0xBEE1, version; each record's: crc32, length, type
_FULL, _LAST = 1, 4  # record types: whole, or the last piece of one split across blocks


def records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run log"
    pos, found, piece = _HEADER, [], b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # padding at a block's end
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        piece += data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            found.append(piece)
            piece = b""
    return found


def read(run_dir: Path) -> dict:
    """{'name', 'group', 'project', 'config': {...}, 'history': [row, ...], 'summary': {...}}."""
    from wandb.proto import wandb_internal_pb2

    (log,) = run_dir.glob("run-*.wandb")
    run = {"config": {}, "history": [], "summary": {}}
    for data in records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run |= {"name": record.run.display_name, "group": record.run.run_group, "project": record.run.project}
            run["config"] |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "config":
            run["config"] |= {i.key: json.loads(i.value_json) for i in record.config.update}
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run["summary"] |= {_key(i): json.loads(i.value_json) for i in record.summary.update}
    return run


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)
