"""Property tests over the public API and the CLI with messy inputs: every call either succeeds or
raises the library's own error (CLI: exit 2 and one line on stderr), writes nothing partial, and
leaves an index consistent (as many vectors as metadata rows)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from index import KNNClassifier, VectorIndex, VectorIndexError
from reliability_lib import model_version
from siamese import SiameseError, build_index, embed, load_items
from siamese.cli import main
from siamese.data.loading import read_labels_csv
from siamese.data.pairs import read_pairs_csv

LIBRARY_ERRORS = (SiameseError, VectorIndexError)


def fuzz(examples: int):
    """Seeded hypothesis settings: a fixed number of examples, no deadline, no example database."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def attempt(tally, call):
    """Run one fuzz case: returns (True, result) or (False, error); any other exception fails the test."""
    tally["fuzz_cases"] += 1
    try:
        return True, call()
    except LIBRARY_ERRORS as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
        tally["rejected"] += 1
        return False, exc


# -- strategies ----------------------------------------------------------------------------------------------

DTYPES = ["float32", "float64", "float16", "int64", "int8", "uint8", "bool", "complex64", "object", "<U3"]


@st.composite
def arrays(draw, dims=(0, 1, 2, 3), sizes=st.integers(0, 6), width=None):
    """Arrays of odd shapes and dtypes, with NaN/inf sprinkled into float ones, or non-arrays."""
    kind = draw(st.sampled_from(["array"] * 6 + ["list", "ragged", "none", "scalar", "string"]))
    if kind == "none":
        return None
    if kind == "scalar":
        return draw(st.sampled_from([3, 2.5, float("nan"), True]))
    if kind == "string":
        return "vectors"
    ndim = draw(st.sampled_from(dims))
    shape = tuple(draw(sizes) for _ in range(ndim))
    if width is not None and ndim == 2 and draw(st.booleans()):
        shape = (shape[0], width)
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype == "object":
        values = np.empty(shape, dtype=object)
        values.flat[:] = [draw(st.sampled_from([None, "a", 1.5, [1]])) for _ in range(values.size)]
    elif dtype == "<U3":
        values = np.full(shape, "1.5", dtype="<U3")
    else:
        values = (rng.standard_normal(shape) * 3).astype(dtype)
        if values.dtype.kind == "f" and values.size and draw(st.booleans()):
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if kind == "list":
        return values.tolist()
    if kind == "ragged" and ndim >= 1:
        return [list(range(i + 1)) for i in range(max(2, shape[0]))]
    return values


keys_st = st.one_of(st.none(), st.lists(st.one_of(st.sampled_from(["k0", "k1", "a", "a", "", " ", "日本", "-x"]),
                                                  st.integers(-3, 40), st.none(), st.floats(allow_nan=True)),
                                        max_size=7))
labels_st = st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=3), st.integers(-2, 5),
                                                    st.floats(), st.booleans()), max_size=7))
k_st = st.one_of(st.integers(-3, 40), st.sampled_from([None, 2.0, True, "3", 10**12]))
ids_st = st.one_of(st.integers(-5, 40), st.lists(st.integers(-5, 40), max_size=6),
                   st.sampled_from([None, [], [1.5], "3", [True], np.array([[1, 2]]), np.array([np.nan])]))

BASE_N, BASE_D = 12, 4


def base_index(metric: str = "l2", kind: str = "flat") -> VectorIndex:
    vectors = np.random.default_rng(1).standard_normal((BASE_N, BASE_D)).astype(np.float32)
    return VectorIndex.build(vectors, keys=[f"k{i}" for i in range(BASE_N)], labels=[i % 3 for i in range(BASE_N)],
                             metric=metric, kind=kind)


def snapshot(index: VectorIndex):
    ids = index.ids
    vectors = index.reconstruct(ids) if ids.size else np.empty((0, index.dim), np.float32)
    return ids.tolist(), index.keys_for_ids(ids).tolist(), index.labels_for_ids(ids).tolist(), vectors, index.next_id


def assert_consistent(index: VectorIndex) -> None:
    assert len(index) == index.stored_count - index.tombstone_count == index.count_metadata_rows()


def assert_unchanged(index: VectorIndex, before) -> None:
    after = snapshot(index)
    assert after[:3] == before[:3] and np.array_equal(after[3], before[3]) and after[4] == before[4]


# -- the index API -------------------------------------------------------------------------------------------


@fuzz(150)
@given(vectors=arrays(width=BASE_D), keys=keys_st, labels=labels_st,
       metric=st.sampled_from(["l2", "cosine", "ip", "L2", "manhattan", None]),
       kind=st.sampled_from(["flat", "hnsw", "auto", "ivf", "bogus"]))
def test_build(tally, vectors, keys, labels, metric, kind):
    ok, index = attempt(tally, lambda: VectorIndex.build(vectors, keys=keys, labels=labels, metric=metric, kind=kind))
    if ok:
        assert_consistent(index)
        assert len(index) == np.asarray(vectors).shape[0]


@fuzz(150)
@given(vectors=arrays(width=BASE_D), keys=keys_st, labels=labels_st, kind=st.sampled_from(["flat", "hnsw"]),
       metric=st.sampled_from(["l2", "cosine"]))
def test_add(tally, vectors, keys, labels, kind, metric):
    index = base_index(metric, kind)
    before = snapshot(index)
    ok, ids = attempt(tally, lambda: index.add(vectors, keys=keys, labels=labels))
    assert_consistent(index)
    if ok:
        assert len(index) == BASE_N + len(ids)
    else:
        assert_unchanged(index, before)


@fuzz(150)
@given(queries=arrays(dims=(0, 1, 2, 3), width=BASE_D), k=k_st, kind=st.sampled_from(["flat", "hnsw"]),
       metric=st.sampled_from(["l2", "cosine", "ip"]))
def test_search(tally, queries, k, kind, metric):
    index = base_index(metric, kind)
    ok, hits = attempt(tally, lambda: index.search(queries, k=k))
    if ok:
        assert hits.ids.shape[1] == k and np.all(hits.ids >= 0) and np.all(np.isfinite(hits.distances))


@fuzz(120)
@given(ids=ids_st, keys=keys_st, by=st.sampled_from(["ids", "keys", "both", "neither"]),
       kind=st.sampled_from(["flat", "hnsw"]))
def test_remove(tally, ids, keys, by, kind):
    index = base_index(kind=kind)
    before = snapshot(index)
    arguments = {"ids": {"ids": ids}, "keys": {"keys": keys}, "both": {"ids": ids, "keys": keys}, "neither": {}}[by]
    ok, removed = attempt(tally, lambda: index.remove(**arguments))
    assert_consistent(index)
    if ok:
        assert len(index) == BASE_N - removed
    else:
        assert_unchanged(index, before)


@fuzz(100)
@given(keys=st.one_of(keys_st, st.sampled_from(["k1", "nope", 3, 99, -1])), ids=ids_st)
def test_get_and_lookups(tally, keys, ids):
    index = base_index()
    ok, vectors = attempt(tally, lambda: index.get(keys))
    if ok:
        assert vectors.shape[-1] == BASE_D
    attempt(tally, lambda: index.keys_for_ids(ids))
    attempt(tally, lambda: index.reconstruct(ids))


@fuzz(100)
@given(k=k_st, weights=st.sampled_from(["uniform", "distance", "majority", None]), queries=arrays(width=BASE_D),
       labelled=st.booleans())
def test_knn_classifier(tally, k, weights, queries, labelled):
    vectors = np.random.default_rng(1).standard_normal((BASE_N, BASE_D)).astype(np.float32)
    index = VectorIndex.build(vectors, labels=[i % 3 for i in range(BASE_N)] if labelled else None)
    ok, classifier = attempt(tally, lambda: KNNClassifier(index, k=k, weights=weights))
    if ok:
        ok, predicted = attempt(tally, lambda: classifier.predict(queries))
        if ok:
            assert set(np.asarray(predicted).tolist()) <= {"0", "1", "2"}


# -- the siamese API -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return model_version(1)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz(120)
@given(items=arrays(dims=(0, 1, 2, 3, 4), width=6),
       batch=st.sampled_from([1, 4, 1024, 0, -1]))
def test_embed(tally, model, items, batch):
    ok, z = attempt(tally, lambda: embed(model, items, batch_size=batch))
    if ok:
        assert z.dtype == np.float32 and z.shape[1] == 3 and np.all(np.isfinite(z))


TEXT_DTYPES = (np.dtype(object), np.dtype("<U3"))


@pytest.mark.parametrize("dtype", TEXT_DTYPES, ids=str)
def test_embed_refuses_text_arrays(model, dtype):
    with pytest.raises(SiameseError):
        embed(model, np.full((2, 6), "1.5").astype(dtype))


@fuzz(100)
@given(items=arrays(dims=(0, 1, 2, 3, 4, 5)), limit=st.sampled_from([None, 1, 0, -2, 2.5]),
       labels=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(0, 3), st.text(max_size=2)), max_size=6)))
def test_load_items_from_arrays(tally, items, limit, labels):
    ok, loaded = attempt(tally, lambda: load_items(items, limit=limit, labels=labels))
    if ok:
        assert len(loaded) >= 1 and bool(np.all(np.isfinite(loaded.x.numpy())))


NAMES = ["data", "my data", "dätä ünï", "-dash", "日本語", "a'b\"c", "x;rm -rf", "..dots", "tab\tname"]
CELLS = ["1", "2.5", "-3", "", " ", "nan", "inf", "abc", "1e400", "0x10", "½", '"4"', "k1", "a,b"]


@st.composite
def csv_bytes(draw, header_words=("a", "b", "c", "key", "label", "x", "")):
    """CSV files with random headers, ragged/non-numeric/NaN cells, BOMs, NUL bytes or non-UTF-8 bytes."""
    header = draw(st.lists(st.sampled_from(header_words), max_size=4))
    rows = draw(st.lists(st.lists(st.sampled_from(CELLS), min_size=max(0, len(header) - 1),
                                  max_size=len(header) + 1), max_size=5))
    text = "\n".join(",".join(r) for r in [header, *rows])
    data = text.encode("utf-8")
    extra = draw(st.sampled_from(["", "", "bom", "latin1", "nul", "crlf", "garbage"]))
    if extra == "bom":
        data = b"\xef\xbb\xbf" + data
    elif extra == "latin1":
        data = data + "\nÿ,é,ß".encode("latin-1")
    elif extra == "nul":
        data = data.replace(b",", b"\x00,", 1)
    elif extra == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif extra == "garbage":
        data = bytes(draw(st.lists(st.integers(0, 255), max_size=40)))
    return data


def fresh_dir(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=scratch))


@fuzz(120)
@given(data=csv_bytes(), name=st.sampled_from(NAMES))
def test_load_items_from_csv(tally, scratch, data, name):
    path = fresh_dir(scratch) / f"{name}.csv"
    path.write_bytes(data)
    ok, items = attempt(tally, lambda: load_items(path))
    if ok:
        assert len(items) >= 1 and bool(np.all(np.isfinite(items.x.numpy())))


def png(rng, size: int, channels: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, (size, size, channels) if channels == 3 else (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def image_files(draw):
    """(relative path, bytes): good PNGs of mixed sizes/modes, truncated or garbage images, empty files."""
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    kind = draw(st.sampled_from(["good", "good", "other size", "rgb", "truncated", "garbage", "empty", "text.jpg"]))
    folder = draw(st.sampled_from(["", "cat/", "dog/", "cat/deeper/", ".hidden/"]))
    name = draw(st.sampled_from(NAMES)) + draw(st.sampled_from([".png", ".PNG", ".jpg", ".gif", ".txt"]))
    good = png(rng, 6, 1)
    data = {"good": good, "other size": png(rng, 5, 1), "rgb": png(rng, 6, 3), "truncated": good[: len(good) // 2],
            "garbage": rng.bytes(64), "empty": b"", "text.jpg": b"not an image"}[kind]
    return folder + name, data


@fuzz(70)
@given(files=st.lists(image_files(), max_size=5), on_error=st.sampled_from(["raise", "skip", "ignore"]),
       size=st.sampled_from([None, 6, (4, 4), 0, "big"]))
def test_load_items_from_folders(tally, scratch, files, on_error, size):
    root = fresh_dir(scratch) / "images"
    root.mkdir()
    for relative, data in files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    ok, items = attempt(tally, lambda: load_items(root, on_error=on_error, image_size=size))
    if ok:
        assert len(items) >= 1 and items.x.ndim == 4


@fuzz(100)
@given(data=csv_bytes(header_words=("a", "b", "label", "key", "x", "")), name=st.sampled_from(NAMES))
def test_read_pairs_csv(tally, scratch, data, name):
    path = fresh_dir(scratch) / f"{name}.csv"
    path.write_bytes(data)
    ok, pairs = attempt(tally, lambda: read_pairs_csv(path, ["k1", "1", "2.5", "-3", "abc"]))
    if ok:
        assert len(pairs) >= 1 and set(pairs.label.tolist()) <= {0, 1}


@fuzz(100)
@given(data=csv_bytes(header_words=("key", "label", "x", "KEY", "")), name=st.sampled_from(NAMES),
       missing=st.booleans())
def test_read_labels_csv(tally, scratch, data, name, missing):
    path = fresh_dir(scratch) / f"{name}.csv"
    if not missing:
        path.write_bytes(data)
    ok, labels = attempt(tally, lambda: read_labels_csv(path))
    if ok:
        assert all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in labels.items())


# -- the command line ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_workspace(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("cli-fuzz")
    model.save(root / "model")
    items = load_items(np.random.default_rng(0).random((30, 6)).astype(np.float32), labels=[i % 2 for i in range(30)])
    build_index(model, items, kind="flat").save(root / "index")
    shutil.copytree(root / "index", root / "index-original")
    return root


@st.composite
def data_sources(draw, root: Path) -> str:
    """A DATA argument: a fuzzed CSV/.npy/.npz/image/folder under an odd name, or a missing path."""
    folder = Path(tempfile.mkdtemp(dir=root))
    name = draw(st.sampled_from(NAMES))
    kind = draw(st.sampled_from(["csv", "csv", "npy", "npz", "image", "folder", "missing", "txt", "dir.npy"]))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    path = folder / f"{name}.{kind.split('.')[-1] if kind != 'folder' else 'd'}"
    if kind == "csv":
        path.write_bytes(draw(csv_bytes(header_words=("a", "b", "c", "d", "e", "f", "key", "label", ""))))
    elif kind == "npy":
        shape = draw(st.sampled_from([(5, 6), (5, 5), (0, 6), (6,), (), (2, 1, 2, 3), (3, 6)]))
        array = rng.random(shape).astype(draw(st.sampled_from(["float32", "float64", "int16", "bool"])))
        if draw(st.booleans()) and array.size and array.dtype.kind == "f":
            array.flat[0] = np.nan
        if draw(st.booleans()):
            np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        else:
            np.save(path, array)
        if draw(st.booleans()):
            path.write_bytes(path.read_bytes()[: draw(st.integers(0, 200))])
    elif kind == "npz":
        arrays_ = {"x": rng.random((4, 6)).astype(np.float32)}
        arrays_.update(draw(st.sampled_from([{}, {"y": np.arange(3)}, {"keys": np.array(["a", "a", "b", "c"])},
                                             {"keys": np.arange(2)}, {"x": np.zeros((0, 6))}, {"x": np.zeros(3)}])))
        np.savez(path, **arrays_)
    elif kind == "image":
        path = path.with_suffix(".png")
        path.write_bytes(draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n broken", png(rng, 6, 1)])))
    elif kind == "folder":
        path.mkdir()
        for relative, data in draw(st.lists(image_files(), max_size=3)):
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            (path / relative).write_bytes(data)
    elif kind == "txt":
        path.write_text("1,2,3,4,5,6\n")
    elif kind == "dir.npy":
        path.mkdir()
    return str(path)


def index_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@fuzz(120)
@given(data=st.data(), command=st.sampled_from(["embed", "index add", "index build", "classify", "query", "finetune",
                                                "anomaly"]))
def test_cli(tally, cli_workspace, data, command):
    root = cli_workspace
    source = data.draw(data_sources(root))
    out = Path(tempfile.mkdtemp(dir=root)) / data.draw(st.sampled_from(NAMES))
    labels_csv = out.with_name("labels.csv")
    labels_csv.write_bytes(data.draw(csv_bytes(header_words=("key", "label", "x", ""))))
    model, index = str(root / "model"), str(root / "index")
    k = data.draw(st.integers(-2, 40))
    argv = {
        "embed": ["embed", model, source, "--out", f"{out}.npz"],
        "index add": ["index", "add", index, model, source],
        "index build": ["index", "build", model, source, "--out", str(out)]
                       + (["--labels", str(labels_csv)] if data.draw(st.booleans()) else []),
        "classify": ["classify", index, model, source, "-k", str(k), "--out", f"{out}.csv"],
        "query": ["query", index, model, f"--key={data.draw(st.sampled_from(['0', '29', 'nope', '', '-1']))}",
                  "-k", str(k)],
        "finetune": ["finetune", model, source, "--pairs", str(labels_csv), "--out", str(out), "--epochs", "1"],
        "anomaly": ["anomaly", model, source, "--index", index, "-k", str(k), "--out", f"{out}.csv"],
    }[command]
    before = index_files(root / "index")
    count_before = len(VectorIndex.load(root / "index"))
    tally["fuzz_cases"] += 1
    capture = _Capture()
    with capture:
        code = main([*argv, "-q"])
    tally[f"cli exit {code}"] += 1
    index_after = VectorIndex.load(root / "index")  # always loads: never left half-written
    assert_consistent(index_after)
    assert code in (0, 2), (argv, code, capture.err)
    if code == 2:
        tally["rejected"] += 1
        lines = capture.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("siamese: error: "), (argv, capture.err)
        assert index_files(root / "index") == before, "a failed command changed the index"
        leftovers = [p.name for p in out.parent.iterdir() if p.name != "labels.csv"]
        assert leftovers == [], f"a failed command left {leftovers}"
    elif command == "index add":
        assert len(index_after) > count_before
        shutil.rmtree(root / "index")  # start the next case from the original index
        shutil.copytree(root / "index-original", root / "index")


class _Capture:
    """Collect what the command writes to stdout/stderr (pytest's capsys is function-scoped)."""

    def __enter__(self):
        import contextlib
        import io

        self._err, self._out = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        self.err = self._err.getvalue()
        return False


TOKENS = ["pretrain", "finetune", "embed", "index", "build", "add", "info", "query", "classify", "anomaly", "plot",
          "bogus", "--out", "-k", "--epochs", "abc", "-1", "0", "--key", "--kind", "ivfpq", "nope", "--labels",
          "--variant", "vae", "--json", "--force", "--threads", "x", "--", "-", "日本", "--limit", "--skip"]


@fuzz(100)
@given(argv=st.lists(st.sampled_from(TOKENS), max_size=6))
@example(argv=["--threads", "-1", "index", "info", "nope"])
@example(argv=["index", "info", "nope", "--threads", "0"])
@example(argv=["query", "--", "-k"])
def test_cli_argument_mistakes(tally, argv):
    """Unknown commands and options, missing or malformed values: exit 2 with one line, or --help."""
    capture = _Capture()
    tally["fuzz_cases"] += 1
    with capture:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exit (usage errors, --help)
            code = exc.code
    tally[f"cli exit {code}"] += 1
    assert code in (0, 2), (argv, code, capture.err)
    if code == 2:
        tally["rejected"] += 1
        lines = capture.err.splitlines()
        assert len(lines) == 1 and ": error: " in lines[0], (argv, capture.err)
