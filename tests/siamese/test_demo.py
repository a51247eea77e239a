"""The demo pipeline end to end on the embedded digits, with tiny epoch counts."""

from siamese.demo import CLASSIFY_ROW, DemoConfig, run_demo


def test_demo_writes_report_plots_model_and_index(tmp_path, capsys):
    config = DemoConfig(pretrain_epochs=3, finetune_epochs=3, widths=(8, 16), latent_dim=8)
    table = run_demo(tmp_path / "demo", progress=False, config=config)
    out = capsys.readouterr().out
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
    assert len((tmp_path / "demo" / "predictions.csv").read_text().splitlines()) == 1 + 359
    labelled = (tmp_path / "demo" / "model-finetuned" / "labels-used.csv").read_text().splitlines()
    assert len(labelled) == 1 + 100 and "100 labelled references" in out
