"""The README stays true: its two set-up commands match CI, and its Python quick start runs."""

import re
from pathlib import Path

import numpy as np
import torch
from torchvision.io import write_png

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_two_setup_commands_and_ci_uses_the_second():
    block = README.split("<!-- test-command -->", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert commands[0].endswith("siamese demo") and commands[1].endswith("python -m pytest")
    assert "<!-- test-command -->" in (ROOT / ".ci" / "run").read_text()


def test_python_quick_start_runs(tmp_path, monkeypatch):
    code = re.search(r"## Python quick start\n\n```python\n(.*?)```", README, re.S).group(1)
    rng = np.random.default_rng(0)
    for folder in ("photos", "new"):
        for cls in ("a", "b"):
            (tmp_path / folder / cls).mkdir(parents=True)
            for i in range(10):
                img = rng.integers(0, 60, (1, 8, 8), dtype=np.uint8)
                img[0, :, 2 if cls == "a" else 5] = 255
                write_png(torch.from_numpy(img), str(tmp_path / folder / cls / f"{i}.png"))
    write_png(torch.zeros(1, 8, 8, dtype=torch.uint8), str(tmp_path / "query.png"))
    (tmp_path / "pairs.csv").write_text("a,b,label\na/0.png,a/1.png,1\na/0.png,b/0.png,0\nb/1.png,b/2.png,1\n")
    monkeypatch.chdir(tmp_path)
    code = code.replace("epochs=20", "epochs=1")
    namespace: dict = {}
    exec(compile(code, "README quick start", "exec"), namespace)
    assert namespace["hits"].keys.shape == (1, 9)
    assert len(namespace["pred"]) == 20
    assert (tmp_path / "model" / "model.safetensors").exists() and (tmp_path / "items.index").is_dir()


def test_first_hour_with_photos_runs_exactly_as_written(tmp_path, monkeypatch):
    """The README's photo-folder path, command by command, on mixed sizes and formats."""
    import shlex

    from PIL import Image

    from siamese.cli import main

    block = README.split("<!-- first-hour -->", 1)[1].split("```", 2)[1]
    commands = [shlex.split(line) for line in block.splitlines()[1:] if line.strip()]
    assert [c[:2] for c in commands] == [["siamese", "pretrain"], ["siamese", "index"], ["siamese", "query"],
                                         ["siamese", "plot"]]
    rng = np.random.default_rng(0)
    sizes, modes = [(37, 52), (500, 375), (120, 90), (64, 64)], ["L", "RGB", "RGBA", "P"]
    for label, brightness in (("beach", 200), ("forest", 60)):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(rng.normal(brightness, 40, (*sizes[i % 4], 3)), 0, 255).astype(np.uint8)
            suffix = ".gif" if modes[i % 4] == "P" else ".jpg" if i % 3 == 0 else ".png"
            Image.fromarray(pixels).convert(modes[i % 4] if suffix != ".jpg" else "RGB").save(
                tmp_path / "photos" / label / f"{i}{suffix}")
    Image.fromarray(np.full((300, 200, 3), 190, np.uint8)).save(tmp_path / "new-photo.jpg")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main([*command[1:], "-q"]) == 0, command
    for written in ("photos.model/config.json", "photos.index/manifest.json", "neighbours.png", "latent.png"):
        assert (tmp_path / written).is_file(), written


def test_scikit_learn_example_runs(monkeypatch, capsys):
    """The README's Pipeline / GridSearchCV example, on the first 400 digits to stay quick."""
    import sklearn.datasets

    code = re.search(r"## scikit-learn\n.*?```python\n(.*?)```", README, re.S).group(1)
    full = sklearn.datasets.load_digits
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda **kw: tuple(a[:400] for a in full(**kw)))
    exec(compile(code.replace("n_jobs=2", "n_jobs=1"), "README scikit-learn", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("{'siameseembedder__finetune_epochs': ") and "test accuracy" in printed[0]
    assert float(printed[1].split()[-1]) > 0.5
