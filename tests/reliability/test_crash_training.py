"""Kill -9 a seeded `siamese pretrain` mid-epoch, `--resume`: the final weights equal those of an
uninterrupted run bit for bit (CPU, one thread)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import faiss
import numpy as np
import torch
from safetensors.torch import load_file

from siamese.cli import main

EPOCHS = 3
ARGS = ["--variant", "denoising", "--noise", "gaussian:0.1", "--latent-dim", "4", "--widths", "32", "16",
        "--epochs", str(EPOCHS), "--batch-size", "32", "--seed", "5", "--threads", "1", "-q"]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, tally):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((1500, 24)).astype(np.float32), allow_pickle=False)
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "siamese", "pretrain", str(data), "--out", str(cut), *ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = cut / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {stderr[-500:]}"
    reached = json.loads(state.read_text())["epoch"]
    assert 1 <= reached < EPOCHS and not (cut / "model.safetensors").exists()
    tally["kills"] += 1

    threads, omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        assert main(["pretrain", str(data), "--out", str(cut), *ARGS, "--resume"]) == 0
        assert main(["pretrain", str(data), "--out", str(tmp_path / "full"), *ARGS]) == 0
    finally:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(omp)
    resumed, full = load_file(str(cut / "model.safetensors")), load_file(str(tmp_path / "full" / "model.safetensors"))
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[k], full[k]) for k in full)
    assert json.loads((cut / "config.json").read_text())["fingerprint"] == \
        json.loads((tmp_path / "full" / "config.json").read_text())["fingerprint"]
    history = (cut / "history.csv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS
    tally["kills_survived"] += 1
