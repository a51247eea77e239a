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
