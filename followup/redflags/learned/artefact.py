"""The model artefact: one gzip file holding a JSON header and raw little-endian arrays, byte-for-byte
reproducible (gzip's timestamp is zeroed, arrays are written in a fixed order), so its sha256 can be pinned in
clinic/red_flags.toml and a retrain from the same corpus gives the same file."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"followup-redflag-model\n"
VERSION = 1


class ArtefactError(RuntimeError):
    """The model artefact is missing, unreadable, or not the one the criteria file pins."""


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dumps(header: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> bytes:
    """The artefact's bytes: header (with each array's dtype and shape) then the arrays, in the order given."""
    meta = {name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()}
    head = json.dumps({**header, "version": VERSION, "arrays": meta}, sort_keys=True, ensure_ascii=False).encode()
    body = b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for a in arrays.values())
    return gzip.compress(MAGIC + struct.pack("<Q", len(head)) + head + body, compresslevel=9, mtime=0)


def loads(data: bytes) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Header and arrays back from `dumps`' bytes; ArtefactError when the bytes are not an artefact."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ArtefactError("the model artefact is not a gzip file") from exc
    if not raw.startswith(MAGIC):
        raise ArtefactError("the model artefact does not start with the expected marker")
    pos = len(MAGIC)
    (size,) = struct.unpack_from("<Q", raw, pos)
    pos += 8
    header = json.loads(raw[pos : pos + size].decode())
    pos += size
    if header.get("version") != VERSION:
        raise ArtefactError(f"model artefact version {header.get('version')!r}; this code reads {VERSION}")
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, spec in header["arrays"].items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        arrays[name] = np.frombuffer(raw, dtype=dtype, count=count, offset=pos).reshape(spec["shape"])
        pos += count * dtype.itemsize
    return header, arrays


def read_pinned(path: Path, sha256: str) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Read the artefact only if its sha256 is the pinned one: a stale or altered model must not start."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtefactError(f"{path}: cannot read the model artefact ({exc.strerror})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtefactError(
            f"{path}: sha256 {actual} is not the {sha256} pinned in [learned] sha256: "
            "retrain with `followup redflags train` (it writes both), or restore the committed artefact"
        )
    return loads(data)
