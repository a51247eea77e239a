"""The demo pipeline end to end on the embedded digits, with tiny epoch counts."""

import re

import torch

from index import VectorIndex
from siamese.demo import CLASSIFY_ROW, DemoConfig, run_demo
from siamese.retrieval.item_sources import item_arrays
from siamese.threads import ThreadChoice
from siamese.training import loop


def test_demo_writes_report_plots_model_and_index(tmp_path, capsys, monkeypatch):
    config = DemoConfig(pretrain_epochs=3, finetune_epochs=2, widths=(8, 16), latent_dim=8, map_points=200)
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: False)  # as in a log file: one line per epoch
    threads_before = torch.get_num_threads()
    table = run_demo(tmp_path / "demo", progress=True, config=config, threads=ThreadChoice(1, "1 thread (--threads)"))
    assert torch.get_num_threads() == threads_before
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "using 1 thread (--threads)"
    assert re.search(r"^\[2/6\] pretraining .*: 3 epochs, ~[\d.]+ s$", out, re.MULTILINE)
    assert re.search(r"^\[3/6\] fine-tuning .*: 2 epochs, ~[\d.]+ s$", out, re.MULTILINE)
    for stage, epochs in (("pretrain denoising", 3), ("finetune contrastive", 2)):
        assert [line.strip().split(",")[0] for line in lines if line.strip().startswith(stage)] == [
            f"{stage}: epoch {i}/{epochs}" for i in range(1, epochs + 1)]
    assert re.search(r"^ +3 epochs \(mean [\d.]+ s/epoch, \d+ items/s\); final training loss", out, re.MULTILINE)
    assert re.search(r"^ +2 epochs \(mean .*; pseudo-pairs on \(k=5\)$", out, re.MULTILINE)
    assert set(table) == {"raw pixels", "autoencoder", "fine-tuned", CLASSIFY_ROW}
    # every row votes among the 10 labelled items per class: raw pixels reach about 0.9 on digits
    assert all(0.0 <= v <= 1.0 for v in table.values()) and table["raw pixels"] > 0.8
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "| fine-tuned |" in report and "report:" in out
    for name in ("latent-autoencoder", "latent-finetuned", "neighbors", "reconstructions", "curves-pretrain",
                 "curves-finetune", "anomaly-scores"):
        assert (tmp_path / "demo" / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("model-ae", "model-finetuned", "index"):
        assert (tmp_path / "demo" / name).is_dir()
    assert f"siamese serve {tmp_path / 'demo' / 'index'} {tmp_path / 'demo' / 'model-finetuned'}" in out
    index = VectorIndex.load(tmp_path / "demo" / "index")  # the served index can show its digits
    shown = item_arrays(index, index.keys_for_ids(index.ids[:3]))
    assert shown.shape == (3, 1, 8, 8) and shown.std() > 0
    assert len((tmp_path / "demo" / "predictions.csv").read_text().splitlines()) == 1 + 359
    labelled = (tmp_path / "demo" / "model-finetuned" / "labels-used.csv").read_text().splitlines()
    assert len(labelled) == 1 + 100 and "100 labelled references" in out
