"""Peak resident anonymous memory of streaming work over memory-mapped .npy files (run as a script
by test_memory_bounds.py in a fresh interpreter, with glibc told to return large freed blocks to
the OS at once so the resident size follows what is really in use). Prints one JSON object.

    python memory_probe.py DIR   (DIR holds x<n>.npy for the sizes in test_memory_bounds)
"""

from __future__ import annotations

import gc
import json
import sys
import threading
from pathlib import Path

import numpy as np

STATUS = Path("/proc/self/status")


def anonymous_bytes() -> int:
    """Resident anonymous memory (heap, torch/numpy/faiss buffers; not the pages of mapped files)."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def peak_growth(work) -> int:
    """Peak of resident anonymous memory above its starting level while `work()` runs."""
    gc.collect()
    start, peak, done = anonymous_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anonymous_bytes())
            done.wait(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], anonymous_bytes()) - start


def main() -> None:
    import faiss
    import torch

    from reliability_lib import model_version
    from siamese import embed
    from siamese.data.loading import iter_item_chunks
    from siamese.retrieval.indexing import build_index

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    folder, sizes, dim, chunk = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    model = model_version(3, latent_dim=4, input_dim=dim, widths=(16,))
    peaks: dict[str, dict[int, int]] = {"embed": {}, "build_index": {}, "whole copy": {}}
    for n in sizes:
        path = str(folder / f"x{n}.npy")

        def embed_all():
            z = np.concatenate([embed(model, part) for part in iter_item_chunks(path, chunk)])
            assert z.shape == (n, 4)

        def build():
            assert len(build_index(model, path, kind="flat", chunk_size=chunk)) == n

        def copy():
            assert np.array(np.load(path, mmap_mode="r", allow_pickle=False)).shape == (n, dim)

        works = [("embed", embed_all), ("build_index", build)] + ([("whole copy", copy)] if n == max(sizes) else [])
        for name, work in works:
            peaks[name][n] = peak_growth(work)
    print(json.dumps(peaks))


if __name__ == "__main__":
    main()
