"""The PAIRS.csv labels from the page go to: `a,b,label` rows over item keys, the format
`siamese finetune --pairs` reads.

Each new row is written atomically (the whole file rewritten beside it and renamed over it, so a
crash leaves the old file or the new one) under the file's writer lock, after reading it again: two
servers labelling into one file keep each other's rows. A file that exists must already be a pairs
file (header `a,b,label`): the server adds to it and never replaces anything else.
"""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path

from index.atomic import atomic_file
from index.locking import write_lock
from index.outputs import check_output_file

from ..data.pairs import iter_pairs_csv, pair_label
from ..errors import SiameseError
from .errors import Conflict, RequestError

HEADER = ("a", "b", "label")
MAX_BYTES = 256 * 2**20  # a pairs file this large is not one a person labelled by hand


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class PairsLog:
    """Labelled pairs of one PAIRS.csv: {(key, key) in sorted order: 0 or 1}."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()  # a symlink's target gets the rows, not a new file over the link
        if self.path.suffix.lower() != ".csv":
            raise RequestError(f"--pairs-out {path} must be a .csv file (the a,b,label rows finetune --pairs reads)")
        check_output_file(self.path, (".csv",))
        self._lock = threading.Lock()
        self._seen: tuple | None = None  # (inode, size, mtime) of the file as last read or written
        self._labels = self._read()

    def __len__(self) -> int:
        return len(self._labels)

    def label_of(self, a: str, b: str) -> int | None:
        return self._labels.get(_pair(a, b))

    def _identity(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _read(self) -> dict[tuple[str, str], int]:
        """The file's pairs; refused when it is no pairs file or labels one pair both ways."""
        self._seen = self._identity()
        if self._seen is None:
            return {}
        size = self._seen[1]
        if size > MAX_BYTES:
            raise RequestError(f"--pairs-out {self.path} holds {size:,} bytes, more than a labelling session "
                               f"writes ({MAX_BYTES:,}); give a new file")
        if size == 0:
            return {}
        labels: dict[tuple[str, str], int] = {}
        try:
            for line, a, b, text in iter_pairs_csv(self.path):
                label = pair_label(text)
                if label is None or not a or not b:
                    raise RequestError(f"line {line} is not a pair `a,b,label` with label 0 or 1")
                if labels.setdefault(_pair(a, b), label) != label:
                    raise RequestError(f"line {line} labels {a} and {b} {label}, an earlier line the other way")
        except SiameseError as exc:
            raise RequestError(f"--pairs-out {self.path} is not a pairs file labels can be added to ({exc}); give a "
                               "new file name or a PAIRS.csv (nothing else is ever overwritten)") from None
        return labels

    def record(self, a: str, b: str, label: int) -> int:
        """Append the row `a,b,label` (nothing when the pair already has this label); the number of
        labelled pairs. A pair labelled the other way before is refused (Conflict)."""
        with self._lock, write_lock(self.path):
            if self._identity() != self._seen:
                self._labels = self._read()  # another server added rows since
            before = self._labels.get(_pair(a, b))
            if before == label:
                return len(self._labels)
            if before is not None:
                raise Conflict(f"{a} and {b} are already labelled {before} in {self.path}; fix the row there "
                               "to change it")
            old = self.path.read_bytes() if self.path.exists() else b""
            row = io.StringIO()
            writer = csv.writer(row, lineterminator="\n")
            if not old:
                writer.writerow(HEADER)
            elif not old.endswith(b"\n"):
                row.write("\n")
            writer.writerow((a, b, label))
            with atomic_file(self.path, "wb") as fh:
                fh.write(old + row.getvalue().encode("utf-8"))
            self._seen = self._identity()
            self._labels[_pair(a, b)] = label
            return len(self._labels)
