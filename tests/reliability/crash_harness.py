"""Kill -9 a process that keeps saving, then check what is on disk (run as a script by
test_crash_recovery.py; prints one JSON object).

    python crash_harness.py model|index|append TARGET SEED KILLS

A forked child saves version after version of TARGET and reports "start v" / "done v" on a pipe
before and after each save; the parent kills it with SIGKILL after a seeded random delay, then
loads TARGET and checks it is exactly the last finished version or the one being written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import reliability_lib as lib


def save_model_version(target: Path, version: int) -> None:
    from siamese.models.saving import save_model

    save_model(lib.model_version(version), target)


def read_model_version(target: Path) -> int:
    from siamese.models.checkpoint import load_model

    model = load_model(target)  # verifies the fingerprint of the weights against config.json
    version = model.info["version"]
    assert model.fingerprint() == lib.model_version(version).fingerprint(), "weights of another version"
    return version


def save_index_version(target: Path, version: int) -> None:
    lib.index_version(version).save(target)


def append_index_version(target: Path, version: int) -> None:
    lib.append_version(target, version)


def read_index_version(target: Path) -> int:
    from index import VectorIndex

    return lib.check_index(VectorIndex.load(target))


SCENARIOS = {
    "model": (save_model_version, read_model_version),
    "index": (save_index_version, read_index_version),
    "append": (append_index_version, read_index_version),
}


def child(scenario: str, target: Path, version: int, out: int) -> None:
    save = SCENARIOS[scenario][0]
    while True:
        version += 1
        os.write(out, f"start {version}\n".encode())
        save(target, version)
        os.write(out, f"done {version}\n".encode())


def main() -> None:
    scenario, target, seed, kills = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    save, read = SCENARIOS[scenario]
    if scenario == "model":
        import torch

        torch.set_num_threads(1)
    import faiss

    faiss.omp_set_num_threads(1)
    first = save_index_version if scenario == "append" else save
    first(target, 0)  # imports and warms up
    started = time.perf_counter()
    first(target, 0)
    save_seconds = time.perf_counter() - started  # kill times scale with it, so a loaded machine still
    rng = random.Random(seed)  # sees kills in every phase of a save and some saves that complete
    version, records = read(target), []
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns: it is killed
            os.close(r)
            try:
                child(scenario, target, version, w)
            finally:
                os._exit(3)
        os.close(w)
        time.sleep(rng.uniform(0.1, 3.0) * max(save_seconds, 0.01))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(r) as fh:
            events = fh.read().split()
        done = [int(v) for word, v in zip(events[::2], events[1::2]) if word == "done"]
        started = [int(v) for word, v in zip(events[::2], events[1::2]) if word == "start"]
        finished = max(done, default=version)
        allowed = {finished} | ({max(started)} if started and max(started) > finished else set())
        record = {"killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                  "saves_finished": len(done), "mid_save": max(started, default=0) > finished,
                  "allowed": sorted(allowed)}
        try:
            version = read(target)
            record.update(ok=version in allowed, found=version)
        except Exception as exc:  # reported, and the test fails on it
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            print(json.dumps({"records": records + [record]}))
            return
        records.append(record)
    leftovers = sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}."))
    print(json.dumps({"records": records, "leftover_temp_dirs": len(leftovers)}))


if __name__ == "__main__":
    main()
