"""What the reliability guards cost, measured side by side with the same work done without them.

    python benchmarks/reliability_cost.py            # 200k-item index, 1M metadata rows
    python benchmarks/reliability_cost.py --quick    # small sizes

Rows:
  index add (locked)      `add_to_saved_index` (writer lock held across load, add and save, the
                          lost-update check on save) vs the same load / add / save with the lock
                          taken only inside save, alternating, median of the repeats
  guards per save         microseconds of each guard a save runs (writer lock, --out ownership
                          check, manifest hash for the lost-update check) against the save itself
  metadata load           `MetadataStore.load` (read-only open, exact schema check, query-time
                          bound, rows copied into a fresh database of the known schema) vs a
                          plain SQLite backup into memory (what loading did before)
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def index_add_rows(folder: Path, n: int, added: int, repeats: int) -> list[tuple[str, float, float]]:
    from index import VectorIndex
    from index.locking import write_lock
    from index.outputs import check_output_directory
    from index.persistence import origin_of

    rng = np.random.default_rng(0)
    dim = 32
    target = folder / "idx"
    VectorIndex.build(rng.standard_normal((n, dim)).astype(np.float32), keys=[f"k{i}" for i in range(n)]).save(target)
    batches = iter(range(10_000))

    def add(locked: bool) -> None:
        batch = next(batches)
        new = rng.standard_normal((added, dim)).astype(np.float32)
        keys = [f"b{batch}-{i}" for i in range(added)]
        if locked:
            with write_lock(target):
                index = VectorIndex.load(target)
                index.add(new, keys=keys)
                index.save(target)
        else:
            index = VectorIndex.load(target)
            index.add(new, keys=keys)
            index.save(target)

    locked, plain = [], []
    for _ in range(repeats):  # alternate, so drift on a shared machine hits both alike
        plain.append(_median_seconds(lambda: add(False), 1))
        locked.append(_median_seconds(lambda: add(True), 1))
    rows = [(f"index add {added} to {n} (s)", statistics.median(locked), statistics.median(plain))]
    save_seconds = statistics.median(plain)

    def take_lock() -> None:
        with write_lock(target):
            pass

    for name, guard in (("write_lock", take_lock),
                        ("--out ownership check", lambda: check_output_directory(target, "index")),
                        ("manifest hash (lost-update check)", lambda: origin_of(target))):
        rows.append((f"guard: {name} (us; vs the whole add)", _median_seconds(guard, 200) * 1e6, save_seconds * 1e6))
    return rows


def metadata_rows(folder: Path, n: int, repeats: int) -> list[tuple[str, float, float]]:
    from index.metadata import SCHEMA, MetadataStore

    path = folder / "meta.sqlite"
    conn = sqlite3.connect(str(path))
    conn.execute(SCHEMA)
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)",
                     ((i, f"item-{i:08d}.png", str(i % 10), None) for i in range(n)))
    conn.commit()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()

    def plain() -> None:
        memory = sqlite3.connect("")
        source = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
        source.backup(memory)
        source.close()
        memory.execute("SELECT id, label, key FROM items ORDER BY id").fetchall()
        memory.close()

    def checked() -> None:
        MetadataStore.load(path).close()

    ours, base = [], []
    for _ in range(repeats):
        base.append(_median_seconds(plain, 1))
        ours.append(_median_seconds(checked, 1))
    return [(f"metadata load, {n} rows (s)", statistics.median(ours), statistics.median(base))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_index, n_meta, repeats = (20_000, 100_000, 3) if args.quick else (200_000, 1_000_000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        rows = index_add_rows(Path(tmp), n_index, 1000, repeats)
        rows += metadata_rows(Path(tmp), n_meta, repeats)
    print("| row | ours | without the guard | ratio |")
    print("|---|---|---|---|")
    for name, ours, base in rows:
        ratio = f"{ours / base:.3%} of it" if name.startswith("guard") else f"{ours / base:.2f}x"
        print(f"| {name} | {ours:.4g} | {base:.4g} | {ratio} |")


if __name__ == "__main__":
    main()
