"""Same/different threshold calibration: hand-made distance sets, persistence, CLI calibrate + verify."""

import json
import shutil

import numpy as np
import pytest
import torch

from index import VectorIndex
from siamese import SiameseError, load_model, save_model
from siamese.retrieval.calibration import (
    CALIBRATION_FILE, calibrate_distances, load_calibration, pair_distances, save_calibration,
)
from siamese.cli import main

import tiny_workspace

# distance: 0.1  0.2  0.3  0.4  0.5  0.6  0.7  0.8
# same:       1    1    0    1    1    0    0    0
# cut at 0.5 -> TP 4, FP 1, FN 0: F1 8/9, the best cut; the threshold sits midway to 0.6
HAND_D = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
HAND_Y = np.array([1, 1, 0, 1, 1, 0, 0, 0])


def f1_at(d, y, t):
    p = d <= t
    tp = np.sum(p & (y == 1))
    return 2 * tp / (p.sum() + (y == 1).sum())


def test_threshold_maximises_f1_on_a_hand_made_set():
    c = calibrate_distances(HAND_D, HAND_Y, metric="l2")
    assert c.threshold == pytest.approx(0.55)
    assert c.f1 == pytest.approx(8 / 9) and c.precision == pytest.approx(0.8) and c.recall == 1.0
    assert c.false_positive_rate == pytest.approx(0.25) and c.n_pairs == 8 and c.n_positive == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_cut_beats_the_chosen_f1(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    d = rng.normal(1.0 - 0.5 * y, 0.4)
    c = calibrate_distances(d, y, metric="l2")
    best = max(f1_at(d, y, t) for t in d)
    assert c.f1 == pytest.approx(best) and f1_at(d, y, c.threshold) == pytest.approx(best)


def test_equal_error_rate():
    # same at 0.1 0.2 0.3 0.6, different at 0.4 0.7 0.8 0.9: cutting at 0.4 misses 1 of 4 of each -> EER 25%
    d = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    c = calibrate_distances(d, y, metric="cosine", target="eer")
    assert c.eer == pytest.approx(0.25)
    assert c.recall == pytest.approx(0.75) and c.false_positive_rate == pytest.approx(0.25)
    assert c.auc == pytest.approx(15 / 16)


@pytest.mark.parametrize("target, threshold, precision, recall", [
    ("precision=1", 0.25, 1.0, 0.5),  # the largest recall at precision 1 ends at 0.2
    ("precision=0.75", 0.55, 0.8, 1.0),
    ("recall=1", 0.55, 0.8, 1.0),
    ("recall=0.5", 0.25, 1.0, 0.5),
])
def test_precision_and_recall_targets(target, threshold, precision, recall):
    c = calibrate_distances(HAND_D, HAND_Y, metric="l2", target=target)
    assert (c.threshold, c.precision, c.recall) == pytest.approx((threshold, precision, recall))
    assert c.target == target


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "precision=1.5"}, "unknown calibration target"),
    ({"target": "accuracy"}, "unknown calibration target"),
    ({"same": np.ones(8)}, "both same"),
    ({"distances": np.r_[HAND_D[:-1], np.nan]}, "NaN"),
    ({"metric": "ip"}, "unknown metric"),
])
def test_bad_calibration_inputs(kwargs, match):
    args = {"distances": HAND_D, "same": HAND_Y, "metric": "l2", **kwargs}
    with pytest.raises(SiameseError, match=match):
        calibrate_distances(args.pop("distances"), args.pop("same"), **args)


def test_unreachable_precision_is_refused():
    with pytest.raises(SiameseError, match="no threshold reaches precision"):
        calibrate_distances(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]), metric="l2", target="precision=1")


def test_confidence_falls_with_distance():
    c = calibrate_distances(HAND_D, HAND_Y, metric="l2")
    p = c.confidence(np.linspace(0, 1, 11))
    assert np.all(np.diff(p) < 0) and np.all((p > 0) & (p < 1))
    assert c.confidence(0.1) > 0.5 > c.confidence(0.8)
    assert c.is_same(0.55) and not c.is_same(0.56)


def test_pair_distances_match_the_index():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    for metric in ("l2", "cosine"):
        index = VectorIndex.build(b[:1].astype(np.float32), metric=metric)
        expected = index.search(a[:1].astype(np.float32), 1).distances[0, 0]
        assert pair_distances(a[:1], b[:1], metric)[0] == pytest.approx(expected, abs=1e-6)


class _Fake:
    metric = "l2"

    def fingerprint(self):
        return "f" * 64


def test_save_load_round_trip_and_validation(tmp_path):
    c = calibrate_distances(HAND_D, HAND_Y, metric="l2", model_fingerprint="f" * 64)
    path = save_calibration(c, tmp_path)
    assert path.name == CALIBRATION_FILE and load_calibration(tmp_path, _Fake()) == c
    record = json.loads(path.read_text())
    for broken, match in [({**record, "threshold": "x"}, "finite number"), ({**record, "format": "other"}, "not a"),
                          ({k: v for k, v in record.items() if k != "eer"}, "lacks the field 'eer'"),
                          ({**record, "n_pairs": -1}, "non-negative")]:
        path.write_text(json.dumps(broken))
        with pytest.raises(SiameseError, match=match):
            load_calibration(tmp_path)
    save_calibration(calibrate_distances(HAND_D, HAND_Y, metric="l2", model_fingerprint="0" * 64), tmp_path)
    with pytest.raises(SiameseError, match="siamese calibrate"):
        load_calibration(tmp_path, _Fake())
    with pytest.raises(SiameseError, match="not calibrated"):
        load_calibration(tmp_path / "nothing")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    import shutil

    root = tiny_workspace.shared(tmp_path_factory)
    own = tmp_path_factory.mktemp("calibration")
    shutil.copytree(root / "tuned", own / "tuned")  # calibrate writes into the model directory
    for name in ("images", "queries", "model"):
        (own / name).symlink_to(root / name)
    (own / "pairs.csv").symlink_to(root / "pairs.csv")
    return own


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_calibrate_verify_and_index_copy(workspace, capsys, tmp_path):
    q = workspace / "queries"
    code, _, err = run(capsys, "verify", workspace / "tuned", q / "a.png", q / "c.png")
    assert code == 2 and "siamese calibrate" in err and err.count("\n") == 1
    code, out, err = run(capsys, "calibrate", workspace / "tuned", workspace / "images", "--pairs",
                         workspace / "pairs.csv", "--plot", tmp_path / "roc.png")
    assert code == 0, err
    assert "ROC AUC" in out and "threshold (f1)" in out and (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    calibration = load_calibration(workspace / "tuned", load_model(workspace / "tuned"))
    assert calibration.n_pairs == 276 and calibration.n_positive == 132
    code, out, _ = run(capsys, "verify", workspace / "tuned", q / "a.png", q / "c.png", "--json")
    record = json.loads(out)
    assert code == 0 and record["same"] == (record["distance"] <= calibration.threshold)
    assert 0 < record["p_same"] < 1
    code, out, _ = run(capsys, "verify", workspace / "tuned", q / "a.png", q / "b.png")
    assert code == 0 and out.startswith(("same", "different")) and "P(same)" in out
    code, _, err = run(capsys, "index", "build", workspace / "tuned", workspace / "images", "--out", tmp_path / "ix",
                       "-q")
    assert code == 0, err
    assert VectorIndex.load(tmp_path / "ix").info["calibration"] == calibration.to_dict()  # survives save/load
    for rule in ("calibrated", "auto"):
        code, out, err = run(capsys, "classify", tmp_path / "ix", workspace / "tuned", q, "--unknown-distance", rule,
                             "--unknown-label", "none-of-these")
        assert code == 0 and "accuracy" not in out, err
    code, out, err = run(capsys, "classify", tmp_path / "ix", workspace / "tuned", workspace / "images",
                         "--unknown-distance", "q0.9", "--unknown-recon-quantile", "0.5", "--out", tmp_path / "p.csv")
    assert code == 0 and "answered 'unknown' for" in out and "with reconstruction error above" in out, err
    predicted = [line.split(",")[1] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert 0 < predicted.count("unknown") < 24  # about half the items reconstruct worse than the median
    code, _, err = run(capsys, "classify", tmp_path / "ix", workspace / "tuned", q, "--unknown-distance", "near")
    assert code == 2 and "--unknown-distance" in err
    code, out, err = run(capsys, "calibrate", workspace / "tuned", workspace / "images", "--pairs",
                         workspace / "missing.csv")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "verify", workspace / "model", q / "a.png", q / "b.png")
    assert code == 2 and "calibrate" in err

    shutil.copytree(workspace / "tuned", tmp_path / "same")
    save_model(load_model(tmp_path / "same"), tmp_path / "same")  # re-saved, same weights: still calibrated
    assert load_calibration(tmp_path / "same", load_model(tmp_path / "same")) == calibration
    changed = load_model(tmp_path / "same")
    with torch.no_grad():
        next(changed.parameters()).add_(0.01)
    save_model(changed, tmp_path / "same")  # other weights: the stale calibration is not carried over
    assert not (tmp_path / "same" / CALIBRATION_FILE).exists()
