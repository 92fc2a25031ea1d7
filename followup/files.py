"""Files that hold patients' data (the SQLite database, the outbox, exports) are the service user's alone: created
0600 whatever the umask (issue 11, finding 14: they were created 0644, readable by every local user)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE = 0o600


def open_private(path: Path, append: bool = True) -> IO[str]:
    """Open `path` for writing text (appending, or from empty), created 0600; an existing file is made 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    os.fchmod(fd, PRIVATE)
    return os.fdopen(fd, "a" if append else "w", encoding="utf-8")


def create_private(path: Path) -> None:
    """Create an empty `path` 0600 unless it exists (SQLite then keeps the mode for the file and its -wal, -shm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        return
    os.close(fd)
