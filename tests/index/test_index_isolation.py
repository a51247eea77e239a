"""`index` must stay importable without the torch side: only numpy, faiss and the stdlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import index

PACKAGE = Path(index.__file__).parent
ALLOWED = {"numpy", "faiss"} | set(sys.stdlib_module_names)


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, index\n"
        "bad = sorted(m for m in ('torch', 'siamese', 'sklearn', 'scipy') if m in sys.modules)\n"
        "assert not bad, bad\n"
        "index.VectorIndex.build([[0.0, 1.0], [1.0, 0.0]]).search([0.0, 1.0], 1)\n"
        "bad = sorted(m for m in ('torch', 'siamese') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_modules_import_only_allowed_packages() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in ALLOWED, f"{path.name} imports {root}"


def test_no_pickle_anywhere() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, path.name


def test_search_params_survive_faiss_torch_utils(tmp_path):
    """pytorch-metric-learning imports faiss.contrib.torch_utils, which wraps Index.search without
    `params`; filtered and tuned searches must still work in that process."""
    import faiss.contrib.torch_utils  # noqa: F401
    import numpy as np

    from index import VectorIndex

    rng = np.random.default_rng(0)
    index = VectorIndex.build(rng.standard_normal((50, 4)).astype(np.float32), kind="hnsw")
    index.remove(ids=[0, 1])
    hits = index.search(rng.standard_normal((3, 4)).astype(np.float32), 5)
    assert not np.isin(hits.ids, [0, 1]).any()
    assert len(index.range_search(np.zeros((1, 4), np.float32), 10.0)[0].ids) == 48
    index.remove(ids=list(range(2, 20)))  # past a quarter removed: the graph is rebuilt
    index.save(tmp_path / "idx")
    again = VectorIndex.load(tmp_path / "idx")
    assert len(again) == 30 and again.reconstruct(again.ids).shape == (30, 4)
    from index import KNNClassifier, kmeans

    labelled = VectorIndex.build(rng.standard_normal((40, 4)).astype(np.float32), labels=["a", "b"] * 20)
    assert KNNClassifier(labelled, k=3).predict(np.zeros((2, 4), np.float32)).shape == (2,)
    assert kmeans(rng.standard_normal((40, 4)).astype(np.float32), 3)[0].shape == (40,)
