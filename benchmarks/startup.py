"""How long the command line takes to start, against `python -c "import numpy"` in the same run.

    python benchmarks/startup.py              # 7 alternating repeats, median wall-clock seconds
    python benchmarks/startup.py --repeats 3
    python benchmarks/startup.py --before DIR  # also the same commands of another checkout (e.g. an older
                                               # commit: git worktree add DIR REV), run from inside DIR

Rows: `siamese --help`, `siamese --version`, `siamese index info INDEX` (a 1000-item index) and, for
scale, `python -c "import torch"` (what every command paid before commands imported lazily). The
ratio column is against the numpy import; the target for --help is at most 3x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seconds(argv: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", type=Path, help="a checkout of an older version to time beside this one")
    args = parser.parse_args()
    from index import VectorIndex

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.index"
        rng = np.random.default_rng(0)
        VectorIndex.build(rng.standard_normal((1000, 32)).astype(np.float32),
                          keys=[f"k{i}" for i in range(1000)]).save(path)
        siamese = [sys.executable, "-m", "siamese"]
        rows = {
            'python -c "import numpy"': [sys.executable, "-c", "import numpy"],
            "siamese --help": [*siamese, "--help"],
            "siamese --version": [*siamese, "--version"],
            "siamese index info INDEX": [*siamese, "index", "info", str(path)],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
        }
        if args.before is not None:
            before = ["env", f"PYTHONPATH={args.before.resolve()}", *siamese]  # -m finds DIR's package first
            rows.update({"before: siamese --help": [*before, "--help"],
                         "before: siamese --version": [*before, "--version"],
                         "before: siamese index info INDEX": [*before, "index", "info", str(path)]})
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.repeats):  # alternate, so load spikes hit every row alike
            for name, argv in rows.items():
                times[name].append(seconds(argv, args.before if name.startswith("before") else ROOT))
    base = statistics.median(times['python -c "import numpy"'])
    print(f"| command | median s ({args.repeats} runs) | x numpy import |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
