"""Content-addressed file storage for original images and their derived, metadata-free copies.

Originals are kept byte for byte under ``originals/<first two hex>/<sha256>``; a file is written to
a temporary name and renamed into place, so a crash never leaves a half-written original and two
uploads of the same bytes converge on one file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def original_key(self, sha256: str) -> str:
        return f"originals/{sha256[:2]}/{sha256}"

    def derived_key(self, sha256: str, variant: str) -> str:
        return f"derived/{sha256[:2]}/{sha256}-{variant}"

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"storage key escapes the storage directory: {key!r}")
        return p

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.is_file() and target.stat().st_size == len(data):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
