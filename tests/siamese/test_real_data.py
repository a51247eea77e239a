"""One real-data check: a short pretraining + fine-tuning run on shipped MNIST digits must give
an embedding whose nearest neighbours agree on the digit, and fine-tuning must not hurt it."""

from pathlib import Path

import numpy as np
import pytest

from siamese import AutoencoderConfig, TrainConfig, embed, load_items, pretrain
from siamese.retrieval.evaluate import knn_accuracy
from siamese.training.finetune import finetune

MNIST = Path(__file__).resolve().parents[1] / "data" / "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not MNIST.is_dir(), reason="tests/data/mnist absent")
def test_short_mnist_run_learns_a_useful_embedding():
    items = load_items(f"mnist-idx:{MNIST}", limit=2500)
    train, queries = items.subset(np.arange(2000)), items.subset(np.arange(2000, 2500))
    config = AutoencoderConfig(variant="denoising", latent_dim=16, widths=(8, 16, 32), hidden=128)
    model = pretrain(train, config, TrainConfig(epochs=4, batch_size=64), progress=False)
    ae = knn_accuracy(embed(model, train), train.labels, embed(model, queries), queries.labels)
    tuned = finetune(model, train, labels=True, labels_per_class=10, train=TrainConfig(epochs=2, lr=1e-3),
                     progress=False)
    ft = knn_accuracy(embed(tuned, train), train.labels, embed(tuned, queries), queries.labels, metric=tuned.metric)
    assert ae > 0.80, ae  # chance is 0.10; raw pixels give about 0.90 at this size
    assert ft >= ae - 0.01, (ae, ft)
    record = tuned.info["finetune"]
    assert record["val_reconstruction_after"] < 1.2 * record["val_reconstruction_before"]
