"""Hostile files whose checksums match: every file of an index, model or bundle directory is
untrusted input. Each case plants a crafted file, rewrites the checksums that cover it (so the
checksum check cannot be what catches it) and must get one line of the library's own error:
no hang, no traceback, no silently changed behaviour.

The loads run in one worker subprocess (this file run as a script); a case that hangs or kills
the worker fails on its own and the worker restarts with the next case, so a hang fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

CASE_TIMEOUT = 30.0  # seconds a worker may spend on one case before it counts as hung (not a speed bound)
DEEP = 200_000  # nesting of the deep-JSON cases


# -- crafting -----------------------------------------------------------------------------------------------


def _sql(db: Path, *statements: str, writable_schema: bool = False) -> None:
    conn = sqlite3.connect(db)
    try:
        if writable_schema:
            conn.execute("PRAGMA writable_schema=ON")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.execute("PRAGMA journal_mode=DELETE")  # fold any -wal back into the file the manifest lists
    finally:
        conn.close()


def _behind_saved_schema(db: Path, relaxed_schema: str, *statements: str) -> None:
    """Run `statements` under a relaxed table definition, then put back the exact saved schema and
    its unique index (now stale), so only a check of the rows themselves can catch the damage."""
    from index.metadata import SCHEMA

    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_items_1'").fetchone()[0]
    conn.close()
    _sql(db, f"UPDATE sqlite_master SET sql = '{relaxed_schema}' WHERE name = 'items'",
         "DELETE FROM sqlite_master WHERE name = 'sqlite_autoindex_items_1'", writable_schema=True)
    _sql(db, *statements)
    _sql(db, f"UPDATE sqlite_master SET sql = '{SCHEMA}' WHERE name = 'items'",
         f"INSERT INTO sqlite_master VALUES ('index', 'sqlite_autoindex_items_1', 'items', {root}, NULL)",
         writable_schema=True)


def _rehash_index(directory: Path) -> None:
    """What an attacker who also rewrites manifest.json does: every listed checksum matches."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (directory / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _rehash_bundle(directory: Path) -> None:
    manifest = json.loads((directory / "bundle.json").read_text())
    for name, entry in manifest["files"].items():
        data = (directory / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (directory / "bundle.json").write_text(json.dumps(manifest))


def _meta(*statements: str, writable_schema: bool = False) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        _sql(directory / "meta.sqlite", *statements, writable_schema=writable_schema)
        _rehash_index(directory)
    return damage


def _meta_behind_schema(relaxed: str, *statements: str) -> Callable[[Path], None]:
    def damage(directory: Path) -> None:
        _behind_saved_schema(directory / "meta.sqlite", relaxed, *statements)
        _rehash_index(directory)
    return damage


def _edit_json(path: Path, change: Callable[[dict], object]) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _deep(text_before: str = "", text_after: str = "") -> str:
    return text_before + "[" * DEEP + "]" * DEEP + text_after


def _deep_in(path: Path, field: str) -> None:
    """Nest DEEP levels into `field` of a JSON object file, keeping the rest valid."""
    text = json.dumps({**json.loads(path.read_text()), field: "@"})
    path.write_text(text.replace('"@"', _deep()))


def _huge(path: Path) -> None:
    """The same object padded with whitespace beyond the bytes any reader accepts (17 MiB)."""
    path.write_text(path.read_text() + " " * (17 << 20))


def _model_fingerprint_of(directory: Path, change: Callable[[dict], object]) -> None:
    """Edit config.json and rewrite its fingerprint as the edited model's own."""
    from siamese import load_model
    from siamese.models.fingerprint import fingerprint
    from siamese.models.networks import NetworkConfig

    model = load_model(directory)
    record = json.loads((directory / "config.json").read_text())
    change(record)
    model.network = NetworkConfig.from_dict(record["network"])  # the fingerprint reads only the description
    record["fingerprint"] = fingerprint(model)
    (directory / "config.json").write_text(json.dumps(record))


def _calibration(model_fingerprint: str, metric: str):
    """A calibration that calls every pair "same" (threshold 1e9)."""
    from siamese.retrieval.calibration import Calibration

    return Calibration(threshold=1e9, metric=metric, target="f1", auc=1.0, average_precision=1.0, eer=0.0,
                       precision=1.0, recall=1.0, f1=1.0, false_positive_rate=0.0, n_pairs=2, n_positive=1,
                       model_fingerprint=model_fingerprint, confidence_coef=-1.0, confidence_intercept=0.0)


def _plant_calibration(bundle: Path) -> None:
    """A valid calibration.json for the bundled model, placed in the bundle but not in bundle.json."""
    manifest = json.loads((bundle / "bundle.json").read_text())
    calibration = _calibration(manifest["model_fingerprint"], manifest["metric"])
    (bundle / "calibration.json").write_text(json.dumps(calibration.to_dict()))


SQL_TEXT = "CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT NULL)"
RECURSION = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"

# case: (what to load, damage(directory)); the directory is a fresh copy of that kind's base artifact
CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "meta: recursive view": ("index", _meta(
        "ALTER TABLE items RENAME TO rows",
        "CREATE VIEW items AS WITH RECURSIVE r(id, key, label, attrs) AS (SELECT * FROM rows UNION ALL "
        "SELECT * FROM r) SELECT * FROM r")),
    "meta: recursive trigger": ("index", _meta(
        "CREATE TABLE side (n)", f"CREATE TRIGGER grow AFTER INSERT ON items BEGIN INSERT INTO side {RECURSION}; END")),
    "meta: desync trigger": ("index", _meta(
        "CREATE TRIGGER relabel AFTER INSERT ON items BEGIN UPDATE items SET label = 'evil'; END")),
    "meta: extra table": ("index", _meta("CREATE TABLE extra (x)")),
    "meta: extra index": ("index", _meta("CREATE INDEX by_label ON items (label)")),
    "meta: extra view": ("index", _meta("CREATE VIEW v AS SELECT 1")),
    "meta: TEXT id column": ("index", _meta(
        "CREATE TABLE t (id TEXT PRIMARY KEY, key TEXT UNIQUE NOT NULL, label TEXT NULL, attrs TEXT NULL)",
        "INSERT INTO t SELECT 'x' || id, key, label, attrs FROM items", "DROP TABLE items",
        "ALTER TABLE t RENAME TO items")),
    "meta: duplicate key, unique constraint dropped": ("index", _meta(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, key TEXT NOT NULL, label TEXT NULL, attrs TEXT NULL)",
        "INSERT INTO t SELECT * FROM items", "UPDATE t SET key = 'k0' WHERE id = 1", "DROP TABLE items",
        "ALTER TABLE t RENAME TO items")),
    "meta: duplicate key behind the saved schema": ("index", _meta_behind_schema(
        SQL_TEXT.replace(" UNIQUE", ""), "UPDATE items SET key = 'k0' WHERE id = 1")),
    "meta: NULL key behind the saved schema": ("index", _meta_behind_schema(
        SQL_TEXT.replace(" UNIQUE NOT NULL", ""), "UPDATE items SET key = NULL WHERE id = 2")),
    "meta: int label behind the saved schema": ("index", _meta_behind_schema(
        SQL_TEXT.replace("label TEXT", "label INTEGER").replace(" UNIQUE", ""),
        "UPDATE items SET label = 7 WHERE id = 3")),
    "meta: negative id": ("index", _meta("UPDATE items SET id = -5 WHERE id = 0")),
    "meta: BLOB key": ("index", _meta("UPDATE items SET key = x'00ff' WHERE id = 4")),
    "meta: empty key": ("index", _meta("UPDATE items SET key = '' WHERE id = 4")),
    "meta: oversized key": ("index", _meta("UPDATE items SET key = printf('%.*c', 5000, 'k') WHERE id = 5")),
    "meta: BLOB label": ("index", _meta("UPDATE items SET label = x'01' WHERE id = 6")),
    "meta: label not UTF-8": ("index", _meta("UPDATE items SET label = CAST(x'ff' AS TEXT) WHERE id = 6")),
    "meta: non-JSON attrs": ("index", _meta("UPDATE items SET attrs = '{not json' WHERE id = 1")),
    "meta: attrs a JSON array": ("index", _meta("UPDATE items SET attrs = '[1, 2]' WHERE id = 1")),
    "meta: attrs nested 1500 deep": ("index", _meta(
        "UPDATE items SET attrs = '{\"a\": ' || printf('%.*c', 1500, '[') || printf('%.*c', 1500, ']') || '}' "
        "WHERE id = 1")),
    "meta: not a database": ("index", lambda d: ((d / "meta.sqlite").write_bytes(b"SQLite format 3\0" + b"\xff" * 200),
                                                 _rehash_index(d))),
    "manifest: huge JSON": ("index", lambda d: _huge(d / "manifest.json")),
    "manifest: deep JSON": ("index", lambda d: _deep_in(d / "manifest.json", "info")),
    "manifest: info not a dict": ("index", lambda d: _edit_json(d / "manifest.json", lambda r: r.update(info=[1]))),
    "config: huge JSON": ("model", lambda d: _huge(d / "config.json")),
    "config: deep JSON": ("model", lambda d: _deep_in(d / "config.json", "versions")),
    "config: info not a dict": ("model", lambda d: _edit_json(d / "config.json", lambda r: r.update(info=[1]))),
    "config: network not a dict": ("model", lambda d: _edit_json(d / "config.json", lambda r: r.update(network=3))),
    "config: float width": ("model", lambda d: _edit_json(d / "config.json", lambda r: r["network"].update(
        widths=[16.5, 8]))),
    "config: unknown metric": ("model", lambda d: _edit_json(d / "config.json", lambda r: r["info"].update(
        metric="manhattan"))),
    "config: edited metric": ("model", lambda d: _edit_json(d / "config.json", lambda r: r["info"].update(
        metric="cosine"))),
    "config: edited normalization": ("model", lambda d: _edit_json(d / "config.json", lambda r: r["info"].update(
        normalization={"offset": 0.0, "scale": 255.0}))),
    "config: conv input shape lie, fingerprint rewritten": ("conv model", lambda d: _model_fingerprint_of(
        d, lambda r: r["network"].update(input_shape=[1, 40000, 40000]))),
    "bundle: unlisted calibration": ("bundle", lambda d: _plant_calibration(d)),
    "bundle: edited metric, checksums rewritten": ("bundle", lambda d: (_edit_json(
        d / "model" / "config.json", lambda r: r["info"].update(metric="cosine")), _rehash_bundle(d))),
    "bundle: deep bundle.json": ("bundle", lambda d: _deep_in(d / "bundle.json", "versions")),
    "bundle: entry with a NUL byte": ("bundle", lambda d: _edit_json(d / "bundle.json", lambda r: r["files"].update(
        {"a\0b": {"sha256": "0", "bytes": 1}}))),
    "calibration: deep JSON": ("calibration", lambda d: _deep_in(d / "calibration.json", "target")),
    "calibration: huge JSON": ("calibration", lambda d: _huge(d / "calibration.json")),
    "state.json: deep JSON": ("checkpoint", lambda d: _deep_in(d / "state.json", "history")),
    "state.json: epoch a string": ("checkpoint", lambda d: _edit_json(d / "state.json", lambda r: r.update(epoch="3"))),
    "state.json: history not a list": ("checkpoint", lambda d: _edit_json(d / "state.json", lambda r: r.update(
        history={"a": 1}))),
}

# damaged directories also given to the command line (`{path}`: the case's directory)
COMMANDS = [
    ("meta: recursive view", ["index", "info", "{path}", "--untrusted"]),
    ("meta: recursive trigger", ["index", "info", "{path}"]),
    ("manifest: deep JSON", ["index", "info", "{path}"]),
    ("config: info not a dict", ["embed", "{path}", "{path}/config.json", "--out", "{path}/codes.npy"]),
    ("config: conv input shape lie, fingerprint rewritten", ["plot", "samples", "{path}", "--out", "{path}/s.png"]),
]


# -- the loads, in the worker ---------------------------------------------------------------------------------


def _tiny_training(directory: Path | None = None):
    """The tiny model, optimizer and generator whose checkpoint the 'checkpoint' cases damage."""
    import torch

    from reliability_lib import model_version

    model = model_version(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    if directory is not None:
        from siamese.training.loop import TrainState, save_checkpoint

        save_checkpoint(directory, TrainState(epoch=1, step=2, history=[{"loss": 1.0}]), model, optimizer, generator)
    return model, optimizer, generator


def _load(kind: str, path: Path) -> list[str]:
    """Load `path` as `kind` the way the library's users do; the names of the steps that raised
    nothing (a refused case raises at its first step)."""
    from index import VectorIndex
    from siamese import load_bundle, load_model
    from siamese.retrieval.calibration import load_calibration
    from siamese.training.loop import load_checkpoint

    if kind == "index":
        passed = []
        for untrusted in (False, True):
            index = VectorIndex.load(path, untrusted=untrusted)
            index.attrs_for_ids(index.ids)
            index.add(np.zeros((1, index.dim), np.float32), keys=["new"])
            passed.append(f"untrusted={untrusted}")
        return passed
    if kind in ("model", "conv model"):
        load_model(path)
    elif kind == "bundle":
        load_bundle(path)
    elif kind == "calibration":
        load_calibration(path)
    elif kind == "checkpoint":
        load_checkpoint(path, *_tiny_training())
    return [kind]


def _command(argv: list[str]) -> dict:
    """Exit status and stderr of the command line `siamese ARGV` (run in this process)."""
    import contextlib
    import io

    from siamese.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    return {"exit": status, "stderr": err.getvalue()}


def worker(spec: Path) -> None:
    """Print one JSON line per case: {"case", "error": [type, message] or None, "passed": [...]}, or
    for a command line {"case", "exit", "stderr"}."""
    from index import VectorIndexError
    from siamese import SiameseError

    for case, kind, target in json.loads(spec.read_text()):
        print(json.dumps({"case": case, "started": True}), flush=True)
        if kind == "command line":
            print(json.dumps({"case": case, **_command(target)}), flush=True)
            continue
        try:
            passed, error = _load(kind, Path(target)), None
        except (VectorIndexError, SiameseError) as exc:
            passed, error = [], [type(exc).__name__, str(exc)]
        print(json.dumps({"case": case, "error": error, "passed": passed}), flush=True)


def _forward_lines(stream, lines: queue.Queue) -> None:
    """Put each line of `stream` into `lines` as it arrives, then None at its end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run_worker(cases: list[tuple[str, str, str]], spec: Path) -> dict[str, dict]:
    """Results of every case; a case that hangs or kills the worker is recorded as such and the
    worker restarts with the next one."""
    results: dict[str, dict] = {}
    remaining = list(cases)
    while remaining:
        spec.write_text(json.dumps(remaining))
        proc = subprocess.Popen([sys.executable, __file__, str(spec)], cwd=Path(__file__).parent,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_forward_lines, args=(proc.stdout, lines), daemon=True).start()
        current, timeout = None, CASE_TIMEOUT * 3  # the first case also waits for the worker's imports
        try:
            while (line := lines.get(timeout=timeout)) is not None:
                record = json.loads(line)
                current = record["case"] if record.get("started") else None
                if not record.get("started"):
                    results[record["case"]] = record
                timeout = CASE_TIMEOUT
        except queue.Empty:
            pass  # `current` hung
        finally:
            proc.kill()
            _, stderr = proc.communicate()
        if current is not None:
            results[current] = {"case": current, "hung_or_crashed": True, "stderr": stderr[-1500:]}
        left = [c for c in remaining if c[0] not in results]
        if len(left) == len(remaining):
            raise AssertionError(f"the worker made no progress: {stderr[-1500:]}")
        remaining = left
    return results


# -- base artifacts, damaged copies and the one worker run ---------------------------------------------------


def _base_artifacts(root: Path) -> dict[str, Path]:
    import torch

    from index import VectorIndex
    from reliability_lib import model_version
    from siamese import Autoencoder, AutoencoderConfig, export_bundle
    from siamese.retrieval.calibration import save_calibration

    model = model_version(1)
    model.save(root / "model")
    vectors = np.random.default_rng(0).standard_normal((30, model.latent_dim)).astype(np.float32)
    index = VectorIndex.build(vectors, keys=[f"k{i}" for i in range(30)], labels=[i % 3 for i in range(30)],
                              attrs=[{"i": i} if i % 2 else None for i in range(30)],
                              model_fingerprint=model.fingerprint(), metric=model.metric)
    index.save(root / "index")
    export_bundle(root / "model", root / "index", root / "bundle")
    shutil.copytree(root / "model", root / "calibration")
    save_calibration(_calibration(model.fingerprint(), model.metric), root / "calibration")
    _tiny_training(root / "checkpoint")
    # a conv model whose many 1-channel stages bring an 8x8 input down to 1x1: its weights would fit
    # a 40000x40000 input just as well (the head sees 1x1 either way)
    config = AutoencoderConfig(variant="vae", arch="conv", latent_dim=2, widths=(1,) * 17, hidden=4)
    torch.manual_seed(0)
    Autoencoder(config, config.network((1, 8, 8))).save(root / "conv model")
    return {kind: root / kind for kind in ("index", "model", "bundle", "calibration", "checkpoint", "conv model")}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("hostile")
    bases = _base_artifacts(root / "base")
    cases = []
    for number, (case, (kind, damage)) in enumerate(sorted(CASES.items())):
        target = root / f"case{number}" / kind.replace(" ", "-")
        shutil.copytree(bases[kind], target)
        damage(target)
        cases.append((case, kind, str(target)))
    paths = {case: path for case, _, path in cases}
    sanity = [(f"intact {kind}", kind, str(path)) for kind, path in bases.items()]
    commands = [(f"{case} | siamese {' '.join(argv)}", "command line", [a.format(path=paths[case]) for a in argv])
                for case, argv in COMMANDS]
    return _run_worker(cases + sanity + commands, root / "spec.json")


def test_intact_artifacts_load(outcomes):
    """The base artifacts load (so each damaged copy is refused for its damage alone)."""
    for kind in ("index", "model", "bundle", "calibration", "checkpoint", "conv model"):
        assert outcomes[f"intact {kind}"]["error"] is None, outcomes[f"intact {kind}"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_refused_in_one_line(case, outcomes, tally):
    tally["fuzz_cases"] += 1
    result = outcomes[case]
    assert not result.get("hung_or_crashed"), f"{case}: hung or crashed: {result.get('stderr')}"
    assert result["error"] is not None, f"{case}: accepted ({result['passed']})"
    kind, message = result["error"]
    assert kind in ("VectorIndexError", "SiameseError") and message and "\n" not in message, message
    assert len(message) < 400, message
    tally["rejected"] += 1


@pytest.mark.parametrize("case, argv", COMMANDS)
def test_cli_refuses_with_exit_2_and_one_line(case, argv, outcomes, tally):
    tally["fuzz_cases"] += 1
    result = outcomes[f"{case} | siamese {' '.join(argv)}"]
    assert not result.get("hung_or_crashed"), f"{case}: hung or crashed: {result.get('stderr')}"
    assert result["exit"] == 2, result["stderr"][-2000:]
    assert result["stderr"].startswith("siamese: error:") and result["stderr"].count("\n") == 1, result["stderr"]
    tally["rejected"] += 1
    tally["cli exit 2"] += 1


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
