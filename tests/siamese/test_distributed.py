"""Data-parallel training: 2 CPU processes (gloo, launched by torchrun) against one process.

One torchrun launch runs every distributed job of this module (process start-up dominates the
cost); the single-process references run here. Batch norm, gradient averaging, the sharded
permutation and PML's distributed loss/miner wrappers must together reproduce the step one
process takes on the same global batch, up to float summation order.

A bias whose layer feeds a batch norm gets zero gradient in exact arithmetic, and AdamW turns
the float noise left in it into full-size steps, so biases are compared through what they do
(the training-mode output of the model), every other parameter directly.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from siamese import AutoencoderConfig, TrainConfig, load_items, load_model, pretrain
from siamese.models.autoencoder import Autoencoder
from siamese.models.saving import CHECKPOINT_DIR
from siamese.training.finetune import FinetuneConfig, finetune

WORLD = 2
TOLERANCE = 2e-4  # float summation order differs between 1 and 2 processes
AE = AutoencoderConfig(variant="plain", latent_dim=4, widths=(16,))
# 80 items, 16 held out for validation: 64 training items = 4 global batches of 16 (8 per rank)
TRAIN = TrainConfig(epochs=2, batch_size=16, lr=3e-3, schedule="constant", seed=3)
TRAIN_ONE_EPOCH = TrainConfig(**{**TRAIN.to_dict(), "epochs": 1})
FINETUNE = {
    "contrastive": FinetuneConfig(labelled_per_step=32, unlabelled_per_step=16, augment=False),
    "hard-miner": FinetuneConfig(labelled_per_step=32, unlabelled_per_step=16, augment=False, miner="hard",
                                 pos_margin=0.05, neg_margin=0.8),
}
FINETUNE_TRAIN = TrainConfig(epochs=2, lr=2e-3, schedule="onecycle", seed=1)

WORKER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    sys.path.insert(0, sys.argv[2])
    import test_distributed as t
    from siamese import load_model, pretrain
    from siamese.training import distributed
    from siamese.training.finetune import finetune

    torch.set_num_threads(1)
    root = Path(sys.argv[1])
    with distributed.session() as parallel:
        items = t.items()
        pretrain(items, t.AE, t.TRAIN, out=root / "ddp-2ep", progress=False)
        pretrain(items, t.AE, t.TRAIN_ONE_EPOCH, out=root / "ddp-resumed", progress=False)
        pretrain(items, t.AE, t.TRAIN, out=root / "ddp-resumed", resume=True, progress=False)
        base = load_model(root / "base")
        for name, config in t.FINETUNE.items():
            finetune(base, items, labels=True, config=config, train=t.FINETUNE_TRAIN, out=root / f"ddp-ft-{name}",
                     progress=False)
        if parallel.is_main:
            (root / "ranks.json").write_text(json.dumps([parallel.rank, parallel.world_size]))
""")


def items():
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(4), 20)
    x = np.clip(rng.normal(0.5, 0.15, (80, 12)) + 0.2 * np.eye(4)[y].repeat(3, axis=1), 0, 1).astype(np.float32)
    return load_items(x, labels=[str(v) for v in y])


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters() if k.endswith(".weight")}


def outputs(model, codes: bool) -> torch.Tensor:
    """Reconstructions (and unit-length codes) of every item, batch norm in training mode."""
    model = copy.deepcopy(model).train()
    with torch.no_grad():
        z = model.encode(items().x)
        parts = [model.decode(z).flatten(1)] + ([torch.nn.functional.normalize(z, dim=1)] if codes else [])
        return torch.cat(parts, dim=1)


def max_difference(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.double() - b.double()).abs().max())
    assert a.keys() == b.keys()
    return max(max_difference(a[k], b[k]) for k in a)


def assert_same_training(single, distributed, start, codes: bool = False) -> None:
    """codes: also compare the unit-length codes (their bias only matters to a metric loss)."""
    assert max_difference(weights(single), weights(distributed)) < TOLERANCE
    assert max_difference(outputs(single, codes), outputs(distributed, codes)) < TOLERANCE
    assert max_difference(weights(start), weights(distributed)) > 10 * TOLERANCE  # training moved them


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train every job once under torchrun with 2 processes; return its output folder."""
    root = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    pretrain(items(), AE, TrainConfig(epochs=1, batch_size=16, seed=5), out=root / "base", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    (root / "worker.py").write_text(WORKER)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
         str(root / "worker.py"), str(root), os.path.dirname(__file__)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_every_rank_joined_the_group(runs):
    assert json.loads((runs / "ranks.json").read_text()) == [0, WORLD]


def test_pretraining_matches_one_process_on_the_same_global_batch(runs):
    torch.set_num_threads(1)
    single = pretrain(items(), AE, TRAIN, progress=False)
    torch.manual_seed(TRAIN.seed)  # the initial weights pretrain starts from
    start = Autoencoder(AE, AE.network(items().item_shape))
    assert_same_training(single, load_model(runs / "ddp-2ep"), start)


def test_resume_under_ddp_continues_exactly(runs):
    straight, resumed = load_model(runs / "ddp-2ep"), load_model(runs / "ddp-resumed")
    assert straight.fingerprint() == resumed.fingerprint()  # bit-identical weights and statistics
    history = (runs / "ddp-resumed" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + TRAIN.epochs  # rank 0 alone wrote it, one row per epoch
    assert (runs / "ddp-resumed" / CHECKPOINT_DIR / "state.json").is_file()


@pytest.mark.parametrize("name", sorted(FINETUNE))
def test_finetuning_mines_pairs_across_ranks_like_one_process(runs, name):
    torch.set_num_threads(1)
    base = load_model(runs / "base")
    single = finetune(base, items(), labels=True, config=FINETUNE[name], train=FINETUNE_TRAIN, progress=False)
    distributed = load_model(runs / f"ddp-ft-{name}")
    assert_same_training(single, distributed, base, codes=True)
    assert distributed.info["finetune"]["loss_object"] == "ContrastiveLoss"
