"""What a newcomer reads in a log: with output to a file (no terminal) training commands name the
thread choice first, print one line per epoch, and sum up with the mean s/epoch ("1 epoch")."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np


def run_logged(tmp_path, *argv: str) -> list[str]:
    log = tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with log.open("w") as fh:
        code = subprocess.run([sys.executable, "-m", "siamese", *argv], stdout=fh, stderr=subprocess.STDOUT,
                              env=env, timeout=300).returncode
    lines = log.read_text().splitlines()
    assert code == 0, lines
    return lines


def test_pretrain_into_a_log_prints_threads_epochs_and_a_mean(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((64, 10), dtype=np.float32))
    lines = run_logged(tmp_path, "pretrain", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m"), "--epochs", "2",
                       "--latent-dim", "3", "--widths", "8")
    assert lines[0].startswith("pretraining a denoising autoencoder") and "thread" in lines[0], lines
    epochs = [line for line in lines if "epoch " in line and "/2" in line]
    assert len(epochs) == 2 and "\r" not in "".join(lines), lines
    assert any(line.startswith("2 epochs (mean ") for line in lines), lines


def test_one_epoch_is_singular_and_quiet_prints_no_epoch_lines(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((64, 10), dtype=np.float32))
    lines = run_logged(tmp_path, "pretrain", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m"), "--epochs", "1",
                       "--latent-dim", "3", "--widths", "8", "-q")
    assert any(line.startswith("1 epoch (mean ") for line in lines), lines
    assert not [line for line in lines if "epoch 1/1" in line], lines
