"""One side of the concurrent-use test (run as a script by test_concurrent_use.py).

    python concurrent_worker.py writer TARGET SAVES     append + save SAVES times, then touch TARGET.done
    python concurrent_worker.py reader TARGET MIN_LOADS load + check + search until the writer is done

The reader prints one JSON object: loads, versions seen and every error it met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


import reliability_lib as lib


def writer(target: Path, saves: int) -> None:
    for version in range(1, saves + 1):
        lib.append_version(target, version)
    target.with_name(target.name + ".done").touch()


def reader(target: Path, min_loads: int, load) -> None:
    done = target.with_name(target.name + ".done")
    loads, versions, errors = 0, set(), []
    while not done.exists() or loads < min_loads:
        try:
            index = load(target)
            version = lib.check_index(index)
            n = len(index)
            hits = index.search(lib.vectors(n)[-2:], k=1)
            assert hits.ids[:, 0].tolist() == [n - 2, n - 1] and float(hits.distances.max()) == 0.0
            versions.add(version)
        except Exception as exc:  # reported; the test requires there are none
            errors.append(f"{type(exc).__name__}: {exc}")
        loads += 1
    print(json.dumps({"loads": loads, "versions": sorted(versions), "errors": errors[:5], "n_errors": len(errors)}))


if __name__ == "__main__":
    import faiss

    from index import VectorIndex

    faiss.omp_set_num_threads(1)
    role, target, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if role == "writer":
        writer(target, count)
    else:
        reader(target, count, VectorIndex.load)
