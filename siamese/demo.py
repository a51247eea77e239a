"""`siamese demo`: the whole pipeline on the embedded digits (or any source) in under a minute.

pretrain a denoising AE -> fine-tune with 10 labelled items per class -> index the training
items (only those 10 per class carry labels) -> classify held-out items by their nearest labelled
neighbours, labels propagated over the index -> score anomalies -> plots and a markdown report
comparing raw pixels, the AE and the fine-tuned encoder with the same few labels.

The demo says what it does as it goes: the thread count and why, one line per stage with what it
is waiting for (epochs and a time estimate), and during training tqdm bars on a terminal or one
line per epoch in a log (progress=False: stage lines only). Lines are flushed as they are printed,
so `siamese demo > log` shows them while it runs.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from index import KNNClassifier
from index.atomic import atomic_file
from index.locking import write_lock
from index.outputs import check_output_directory, claim_output_directory
from index.propagation import propagated_index

from .data.loading import load_items, read_labels_csv
from .errors import SiameseError
from .inference.anomaly import score_items
from .inference.embed import embed, reconstruct
from .models.autoencoder import AutoencoderConfig
from .retrieval.evaluate import knn_accuracy
from .retrieval.indexing import build_index
from .retrieval.item_sources import record_source
from .threads import ThreadChoice, apply_threads, choose_threads
from .training.finetune import FinetuneConfig, finetune
from .training.loop import TrainConfig, seconds_text
from .training.pretrain import pretrain
from .training.stages import summarize_history

logger = logging.getLogger(__name__)
CLASSIFY_ROW = "fine-tuned + label propagation"


@dataclass(frozen=True)
class DemoConfig:
    """Settings tuned so the digits demo finishes in about a minute on two cores."""

    held_out: float = 0.2  # share of items kept aside as queries
    labels_per_class: int = 10
    latent_dim: int = 32
    widths: tuple[int, ...] = (16, 32)
    pretrain_epochs: int = 20  # for ~1500 items; scaled down for larger sets
    pretrain_lr: float = 3e-3
    finetune_epochs: int = 12
    finetune_lr: float = 1e-3
    metric_weight: float = 20.0  # the labelled and pseudo-pair terms against reconstruction (library default 10)
    distance: str = "euclidean"  # on 8x8 digits raw L2 measured 0.5-1 point above cosine (5 seeds)
    k: int = 5
    map_points: int = 500  # t-SNE maps of a seeded sample: as clear as all 1438 digits at a third of the time
    seed: int = 0


def _epochs(base: int, n: int) -> int:
    return int(np.clip(round(base * 1500 / max(n, 1)), 3, base))


def run_demo(out: Path, dataset: str = "sklearn:digits", *, progress: bool = True, seed: int = 0,
             config: DemoConfig | None = None, overwrite: bool = False, threads: ThreadChoice | None = None) -> dict:
    """Run the demo into `out` (new, empty or an earlier demo's folder; `overwrite` allows any
    other; locked while the demo runs); returns the accuracy table as {row: accuracy}.

    threads: the torch/faiss thread count to run with (default `choose_threads()`); the counts in
    use before are restored afterwards."""
    check_output_directory(out, "demo", overwrite=overwrite)  # before the lock: a refusal leaves no trace
    choice = threads if threads is not None else choose_threads()
    with write_lock(out), _using(choice):
        out = claim_output_directory(out, "demo", overwrite=overwrite)
        return _run_demo(out, dataset, progress=progress, config=config or DemoConfig(seed=seed), threads=choice)


@contextlib.contextmanager
def _using(choice: ThreadChoice) -> Iterator[None]:
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    apply_threads(choice)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def _run_demo(out: Path, dataset: str, *, progress: bool, config: DemoConfig, threads: ThreadChoice) -> dict:
    from . import plots

    started = time.perf_counter()
    say = functools.partial(print, flush=True)  # a log file sees each line when it happens
    epoch_lines: Callable[[str], None] | bool = (lambda line: say(f"      {line}")) if progress else False
    say(f"using {threads.reason}")
    items = load_items(dataset)
    if not items.has_labels:
        raise SiameseError(f"the demo needs a labelled dataset to report accuracy; {items.source} has no labels")
    order = np.random.default_rng(config.seed).permutation(len(items))
    n_held = int(round(len(items) * config.held_out))
    train, held = items.subset(np.sort(order[n_held:])), items.subset(np.sort(order[:n_held]))
    say(f"[1/6] {len(items)} items of shape {items.item_shape} from {items.source}: "
        f"{len(train)} to index, {len(held)} held out")

    ae_config = AutoencoderConfig(variant="denoising", latent_dim=config.latent_dim, widths=config.widths)
    pretrain_train = TrainConfig(epochs=_epochs(config.pretrain_epochs, len(train)), batch_size=64,
                                 lr=config.pretrain_lr, seed=config.seed)
    per_item = _seconds_per_item(ae_config, train, pretrain_train.batch_size)
    say(f"[2/6] pretraining a denoising autoencoder on the {len(train)} training items (labels unused): "
        f"{_epochs_text(pretrain_train.epochs)}, ~{_estimate(pretrain_train.epochs * len(train) * per_item)}")
    ae = pretrain(train, ae_config, pretrain_train, out=out / "model-ae", progress=epoch_lines)
    history = _history(out / "model-ae")
    say(f"      {summarize_history(history)}")

    ft_config = FinetuneConfig(distance=config.distance, metric_weight=config.metric_weight)
    ft_train = TrainConfig(epochs=_epochs(config.finetune_epochs, len(train)), lr=config.finetune_lr,
                           batch_size=64, seed=config.seed)
    per_item = sum(float(r["seconds"]) for r in history) / (len(history) * len(train))  # measured, not probed
    n_labelled = _labelled_count(train, config.labels_per_class)
    say(f"[3/6] fine-tuning as a Siamese network on {n_labelled} labelled items ({config.labels_per_class} per "
        f"class) and pseudo-pairs mined among the rest, contrastive loss + reconstruction: "
        f"{_epochs_text(ft_train.epochs)}, "
        f"~{_estimate(ft_train.epochs * _finetune_passes(len(train), n_labelled, ft_config) * per_item)}")
    tuned = finetune(ae, train, labels=True, labels_per_class=config.labels_per_class, config=ft_config,
                     train=ft_train, out=out / "model-finetuned", progress=epoch_lines)
    say(f"      {summarize_history(_history(out / 'model-finetuned'), pseudo_pairs=ft_config.pseudo_pairs)}")
    known = read_labels_csv(out / "model-finetuned" / "labels-used.csv")

    say(f"[4/6] indexing the training items ({len(known)} of them labelled) and classifying the held-out "
        f"items by their {config.k} nearest neighbours, labels propagated over the index")
    index = build_index(tuned, train, labels=known)
    record_source(index, dataset, 0, index.next_id)  # `siamese serve` reads the indexed digits back from it
    index.save(out / "index")
    predicted = KNNClassifier(propagated_index(index), k=config.k).predict(embed(tuned, held))
    _write_predictions(out / "predictions.csv", held, predicted)
    few_labels = [known.get(key) for key in train.keys]
    references = {"raw pixels": (train.x.flatten(1).numpy(), held.x.flatten(1).numpy(), "l2"),
                  "autoencoder": (embed(ae, train), embed(ae, held), ae.metric),
                  "fine-tuned": (embed(tuned, train), embed(tuned, held), tuned.metric)}
    table = {name: knn_accuracy(z, few_labels, z_held, held.labels, k=config.k, metric=metric)
             for name, (z, z_held, metric) in references.items()}
    table[CLASSIFY_ROW] = float(np.mean(predicted.astype(str) == np.asarray(held.labels, dtype=str)))
    z_ae, z_ft = references["autoencoder"][0], references["fine-tuned"][0]

    say(f"[5/6] scoring anomalies (reconstruction error and distance to the {config.k} nearest indexed items, "
        "whitened)")
    scores = score_items(tuned, held, index=index, k=config.k)
    top = scores.top(10)
    _write_anomalies(out / "anomalies.csv", scores)

    mapped = min(config.map_points, len(train))
    say(f"[6/6] plotting: t-SNE maps of {mapped} indexed items in both latent spaces (the slow part), "
        "neighbours, reconstructions, training curves, anomaly scores")
    figures = out / "plots"
    hits = index.search(embed(tuned, held.subset(range(6))), 9)
    neighbours = _images_for_keys(train, hits.keys)
    paths = [
        plots.plot_latent(z_ae, train.labels, figures / "latent-autoencoder.png", title="autoencoder latent space",
                          method="tsne", max_points=mapped, seed=config.seed),
        plots.plot_latent(z_ft, train.labels, figures / "latent-finetuned.png", title="fine-tuned latent space",
                          method="tsne", max_points=mapped, seed=config.seed),
        plots.plot_neighbors(held.x[:6].numpy(), neighbours, figures / "neighbors.png", distances=hits.distances,
                             neighbor_labels=hits.labels, query_labels=held.labels[:6],
                             title="held-out queries and their 9 nearest indexed items"),
        plots.plot_reconstructions(held.x[:16].numpy(), reconstruct(tuned, held.subset(range(16))),
                                   figures / "reconstructions.png", title="input (top) vs reconstruction (bottom)"),
        plots.plot_curves(out / "model-ae" / "history.csv", figures / "curves-pretrain.png"),
        plots.plot_curves(out / "model-finetuned" / "history.csv", figures / "curves-finetune.png"),
        plots.plot_score_histogram(scores.reconstruction, figures / "anomaly-scores.png",
                                   title="reconstruction error of held-out items", score_name="reconstruction error"),
    ]
    seconds = time.perf_counter() - started
    report = _report(items, train, held, len(known), table, scores, top, paths, out, seconds, config)
    with atomic_file(out / "report.md", "w") as fh:
        fh.write(report)
    say("")
    say(_table(table, len(held), len(known)))
    say("")
    say(f"most anomalous held-out items: {', '.join(held.keys[i] for i in top[:5])}")
    say(f"report: {out / 'report.md'}   plots: {figures}/   index: {out / 'index'}   "
        f"models: {out / 'model-ae'}, {out / 'model-finetuned'}")
    serve = " ".join(shlex.quote(str(out / name)) for name in ("index", "model-finetuned"))
    say(f"search, browse and label in a web page: siamese serve {serve} --pairs-out "
        f"{shlex.quote(str(out / 'pairs.csv'))}   (then open http://127.0.0.1:8000/)")
    say(f"done in {seconds:.0f} s")
    return table


def _seconds_per_item(ae_config: AutoencoderConfig, items, batch_size: int) -> float:
    """Seconds a pretraining step spends per item here and now, timed on a throwaway model (for
    the estimate the stage line gives; the real run's own seeds are untouched)."""
    import torch

    from .models.autoencoder import Autoencoder

    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        model = Autoencoder(ae_config, ae_config.network(items.item_shape))
    optimizer = torch.optim.AdamW(model.parameters())
    x = items.x[:min(batch_size, len(items))].float()
    timings = []
    for _ in range(3):  # the first step pays for warm-up
        began = time.perf_counter()
        loss, _ = model.loss(x, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - began)
    return min(timings[1:]) / len(x)


def _finetune_passes(n: int, n_labelled: int, config: FinetuneConfig) -> float:
    """Items reconstructed per fine-tuning epoch: each step reconstructs a batch of items plus the
    labelled ones (what dominates a step here: embedding the labelled items and the pseudo-pairs
    without the decoder measured much cheaper on the digits, so they are not counted)."""
    steps = -(-n // config.unlabelled_per_step)
    return steps * (min(n, config.unlabelled_per_step) + min(n_labelled, config.labelled_per_step))


def _labelled_count(items, per_class: int) -> int:
    _, counts = np.unique(np.asarray(items.labels, dtype=str), return_counts=True)
    return int(np.minimum(counts, per_class).sum())


def _history(model_dir: Path) -> list[dict]:
    with open(model_dir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _epochs_text(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _estimate(seconds: float) -> str:
    return f"{seconds_text(seconds)} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _images_for_keys(items, keys: np.ndarray) -> np.ndarray:
    position = {key: i for i, key in enumerate(items.keys)}
    flat = np.array([position[k] for k in keys.ravel()])
    return items.x[flat].numpy().reshape(*keys.shape, *items.item_shape)


def _table(table: dict[str, float], n: int, n_labelled: int) -> str:
    """Every row votes among the same labelled training items; the last row first spreads their
    labels over all indexed items (what `siamese classify` does when few items are labelled)."""
    lines = [f"| embedding | kNN accuracy on {n} held-out items, {n_labelled} labelled references |", "|---|---|"]
    lines += [f"| {name} | {100 * acc:.2f}% |" for name, acc in table.items()]
    return "\n".join(lines)


def _write_predictions(path: Path, items, predicted) -> None:
    with atomic_file(path, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "predicted", "label"])
        writer.writerows(zip(items.keys, predicted, items.labels))


def _write_anomalies(path: Path, scores) -> None:
    with atomic_file(path, "w") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "reconstruction_error", "knn_distance", "combined"])
        for i in np.argsort(-scores.combined, kind="stable"):
            writer.writerow([scores.keys[i], f"{scores.reconstruction[i]:.6g}", f"{scores.knn_distance[i]:.6g}",
                             f"{scores.combined[i]:.4f}"])


def _report(items, train, held, n_labelled: int, table, scores, top, paths, out: Path, seconds: float,
            config: DemoConfig) -> str:
    images = "\n".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in paths)
    anomalies = "\n".join(f"| {held.keys[i]} | {held.labels[i]} | {scores.reconstruction[i]:.2f} | "
                          f"{scores.knn_distance[i]:.4f} |" for i in top)
    return f"""# siamese demo report

Data: {items.source}, {len(items)} items of shape {items.item_shape}; {len(train)} indexed, {len(held)} held out
(seed {config.seed}). The autoencoder saw no labels; fine-tuning used {config.labels_per_class} labelled items
per class, and only those items carry labels in the index. Each row classifies the held-out items by a
vote of their {config.k} nearest labelled training items in that embedding; the last row is the demo's
classifier: the labels are first propagated over the index's kNN graph (`siamese classify`).

{_table(table, len(held), n_labelled)}

## Most anomalous held-out items

| key | label | reconstruction error | kNN distance (whitened latent space) |
|---|---|---|---|
{anomalies}

## Plots

{images}

Finished in {seconds:.0f} s.
"""
