"""Runs CLI commands in-process inside a private mount namespace prepared by
test_writers_and_environment.py (small or read-only file systems), so that one interpreter start
serves every case. Prints one JSON list: per case, the exit code, stderr and the index's count after.

    python environment_worker.py CASES.json    CASES: [{"cwd": DIR, "argv": [...]}, ...]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys


def main() -> None:
    from index import VectorIndex
    from siamese.cli import main as cli

    results = []
    for case in json.loads(open(sys.argv[1]).read()):
        os.chdir(case["cwd"])
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli(case["argv"])
        results.append({"code": code, "stderr": err.getvalue(), "count": len(VectorIndex.load("idx"))})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
