"""Quality protocol on MNIST t10k: first 8000 items = index/training, last 2000 = queries.

Rows, all scored the same way (kNN k=5 accuracy of queries against the index, precision@1,
MAP@R, NMI of k-means clusters): raw pixels, PCA-32, each autoencoder variant at d=32, d=2
autoencoders, and the best encoder fine-tuned with 10 (3 seeds) / 100 / all labels per class
(pairs built only from the labelled subset: pseudo-pairs off; benchmarks/pseudo_pairs.py adds them).

    python benchmarks/quality.py --jobs 2                 # everything (about an hour on 2 cores)
    python benchmarks/quality.py --quick                  # 2 epochs per model, a smoke run
    python benchmarks/quality.py --holdout --rows ...     # choices: items 0-6999 vs 7000-7999
    python benchmarks/quality.py --defaults --jobs 2      # the targets: library defaults, 3 seeds,
                                                          # and the default autoencoder's cost curve

--holdout never touches the 2000 queries: models train on the first 7000 items and are scored with
items 7000-7999 as queries, and by leave-one-out kNN over all 8000 (items whose labels training
never saw), so settings are chosen there and only then measured on the split.

Trained models and per-row results are cached in --work so an interrupted run continues; the
baselines are recomputed in every run. The table is printed and written to --work/quality.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MNIST = f"mnist-idx:{ROOT / 'tests' / 'data' / 'mnist'}"

from siamese.training.self_training import SelfTrainingConfig  # noqa: E402 (after the path insert)


@dataclass(frozen=True)
class Row:
    name: str
    variant: str = "denoising"
    latent_dim: int = 32
    parent: str | None = None  # fine-tuned rows: the pretrained row they start from
    per_class: int | None = None  # labelled items per class (None with parent = all labels)
    seed: int = 0
    distance: str = "cosine"
    epochs: int | None = None  # pretraining epochs in a full run (2 with --quick); None = the library default
    extra: dict = field(default_factory=dict)
    defaults: bool = False  # every setting the library's default except latent_dim, seed and labels


# The rows measured before the default schedule moved to the cost curve's knee keep their 20 epochs.
BEFORE_KNEE = 20
PRETRAINED = [Row(f"ae-{v}-32", variant=v, epochs=BEFORE_KNEE)
              for v in ("plain", "denoising", "sparse", "ksparse", "contractive", "vae")]
PRETRAINED += [Row("ae-denoising-2", latent_dim=2, epochs=BEFORE_KNEE),
               Row("ae-plain-2", variant="plain", latent_dim=2, epochs=BEFORE_KNEE),
               Row("ae-vae-2", variant="vae", latent_dim=2, epochs=BEFORE_KNEE),
               Row("ae-denoising-2-e40", latent_dim=2, epochs=40)]
W10 = {"metric_weight": 10.0}  # the weight these rows were measured with (the default before it adapted)
FINETUNED = [Row(f"ft-10pc-s{s}", parent="ae-denoising-32", per_class=10, seed=s, extra=W10) for s in (0, 1, 2)]
FINETUNED += [Row("ft-100pc", parent="ae-denoising-32", per_class=100, extra=W10),
              Row("ft-all", parent="ae-denoising-32", extra=W10),
              Row("ft-all-w50", parent="ae-denoising-32", extra={"metric_weight": 50.0}),
              Row("ft-100pc-d2", parent="ae-denoising-2", latent_dim=2, per_class=100, distance="euclidean", extra=W10),
              Row("ft-100pc-d2-e40-cos", parent="ae-denoising-2-e40", latent_dim=2, per_class=100, extra=W10),
              Row("ft-100pc-d2-e40", parent="ae-denoising-2-e40", latent_dim=2, per_class=100, distance="euclidean",
                  extra=W10)]


# Rows that explore settings; run them with --holdout (choices are never made on the 2000 queries).
EXPLORE = [Row(f"ae-views-w{w}" + (f"-t{t}" if t != 0.2 else ""), epochs=BEFORE_KNEE,
               extra={"view_weight": float(w), "view_temperature": t}) for w in (1, 2, 5, 20, 50) for t in (0.2, 0.5)]
EXPLORE += [Row("ae-views-w5-t0.5-mask0.3", epochs=BEFORE_KNEE,
                extra={"view_weight": 5.0, "view_temperature": 0.5, "noise": "mask:0.3"}),
            Row("ae-views-w5-t0.5-e40", epochs=40, extra={"view_weight": 5.0, "view_temperature": 0.5}),
            Row("ae-views-w5-t0.5-aug2", epochs=BEFORE_KNEE,
                extra={"view_weight": 5.0, "view_temperature": 0.5, "augment_strength": 2.0}),
            Row("ae-denoising-aug2", epochs=BEFORE_KNEE, extra={"augment_strength": 2.0})]
# the neighbour term's weight at d=2, and at d=32
EXPLORE += [Row(f"ae-d2-nb{w:g}", latent_dim=2, epochs=BEFORE_KNEE, defaults=True,
                extra={"neighbour_weight": w}) for w in (10.0, 30.0, 100.0)]
EXPLORE += [Row("ae-d32-nb10", epochs=BEFORE_KNEE, defaults=True, extra={"neighbour_weight": 10.0})]
# does a 2-D map with the neighbour term still need 20 epochs, or is the d=32 knee (10) enough?
EXPLORE += [Row("ae-d2-nb30-e10", latent_dim=2, epochs=10, defaults=True, extra={"neighbour_weight": 30.0})]
EXPLORE_FT = [Row(f"ft-10pc-from-{parent.name}", parent=parent.name, per_class=10, extra=W10)
              for parent in [r for r in PRETRAINED if r.name == "ae-denoising-32"] + EXPLORE]
EXPLORE_FT += [Row("ft-100pc-w10", parent="ae-denoising-32", per_class=100, extra=W10),
               Row("ft-100pc-auto", parent="ae-denoising-32", per_class=100),
               Row("ft-all-w10", parent="ae-denoising-32", extra=W10),
               Row("ft-all-auto", parent="ae-denoising-32"),
               Row("ft-10pc-default", parent="ae-denoising-32", per_class=10, defaults=True,
                   extra={"self_training": None})]
# self-training's second round: from the autoencoder, with the most confident 80% / all of the
# propagated labels (ft-10pc-default: one round, before self-training became a default)
EXPLORE_FT += [Row(f"ft-10pc-selfae-{keep}", parent="ae-denoising-32", per_class=10, defaults=True,
                   extra={"self_training": SelfTrainingConfig(keep=keep)}) for keep in (0.8, 1.0)]
EXPLORE_FT += [Row("ft-100pc-d2-from-nb30", parent="ae-d2-nb30", latent_dim=2, per_class=100, defaults=True)]


# The targets' table: the library's defaults (no per-row settings but the latent size), three seeds.
SEEDS = (0, 1, 2)
DEFAULTS = [Row(f"default-ae-s{s}", seed=s, defaults=True) for s in SEEDS]
DEFAULTS += [Row(f"default-ae-d2-s{s}", latent_dim=2, seed=s, defaults=True) for s in SEEDS]
# Quality against training time for the default autoencoder (the schedule's knee), judged by the
# leave-one-out score over the 8000 training items; the default schedule's own point is the
# defaults table's seed-0 autoencoder.
CURVE = [Row(f"curve-e{epochs}", epochs=epochs, defaults=True) for epochs in (3, 5, 20, 40)]
# 20 epochs (the default before the knee) for the other seeds: the knee judged over 3 seeds
CURVE += [Row(f"curve-e20-s{s}", epochs=20, seed=s, defaults=True) for s in SEEDS[1:]]
DEFAULTS_FT = [Row(f"default-ft-{name}-s{s}", parent=f"default-ae-s{s}", per_class=per_class, seed=s, defaults=True)
               for name, per_class in (("10pc", 10), ("100pc", 100), ("all", None)) for s in SEEDS]
# the 10-per-class rows before self-training became a default: the defaults with --self-training off
DEFAULTS_FT += [Row(f"default-ft-10pc-1round-s{s}", parent=f"default-ae-s{s}", per_class=10, seed=s, defaults=True,
                    extra={"self_training": None}) for s in SEEDS]
DEFAULTS_FT += [Row(f"default-ft-100pc-d2-s{s}", parent=f"default-ae-d2-s{s}", latent_dim=2, per_class=100, seed=s,
                    defaults=True) for s in SEEDS]


def split(holdout: bool = False):
    """(index items, queries): the first 8000 and last 2000 of MNIST t10k; with `holdout`, the first
    7000 and the next 1000 (the 2000 queries untouched)."""
    from siamese import load_items

    items = load_items(MNIST)
    if holdout:
        return items.subset(np.arange(7000)), items.subset(np.arange(7000, 8000))
    return items.subset(np.arange(8000)), items.subset(np.arange(8000, 10000))


def run_row(row: Row, work: Path, quick: bool, train_only: bool = False, holdout: bool = False) -> dict:
    """Train (or load) the row's model and score it; returns the result record (also cached)."""
    import torch

    torch.set_num_threads(1)
    from siamese import AutoencoderConfig, TrainConfig, load_model, pretrain
    from siamese.training.finetune import FINETUNE_TRAIN, FinetuneConfig, finetune

    result_path = work / "results" / f"{row.name}.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    train_items, queries = split(holdout)
    model_dir = work / "models" / row.name
    timing_path = work / "results" / f"{row.name}.timing.json"
    started = time.perf_counter()
    if (model_dir / "config.json").exists() and timing_path.exists():
        model = load_model(model_dir)
        info, seconds = json.loads(timing_path.read_text())
        return finish_row(row, model, model_dir, train_items, queries, info, seconds, result_path, train_only,
                          holdout)
    if row.parent is None:
        variant = {} if row.defaults else {"variant": row.variant}  # defaults rows: the library's own settings
        config = AutoencoderConfig(latent_dim=row.latent_dim, **variant, **row.extra)
        train = TrainConfig(epochs=2 if quick else (row.epochs or TrainConfig().epochs), seed=row.seed)
        model = pretrain(train_items, config, train, out=model_dir, progress=False)
        info = {}
    else:
        parent = load_model(work / "models" / row.parent)
        # the quality table's own rows: labelled pairs only (benchmarks/pseudo_pairs.py adds them);
        # defaults rows: every fine-tuning default, pseudo-pairs included
        config = (FinetuneConfig(**row.extra) if row.defaults
                  else FinetuneConfig(distance=row.distance, pseudo_pairs=None, **row.extra))
        train = replace(FINETUNE_TRAIN, epochs=1 if quick else FINETUNE_TRAIN.epochs, seed=row.seed)
        model = finetune(parent, train_items, labels=True, labels_per_class=row.per_class, config=config,
                         train=train, out=model_dir, progress=False)
        record = model.info["finetune"]
        info = {"n_labelled": record["n_labelled"], "recon_before": record["val_reconstruction_before"],
                "recon_after": record["val_reconstruction_after"], "metric_weight": record["config"]["metric_weight"]}
    seconds = time.perf_counter() - started
    timing_path.parent.mkdir(parents=True, exist_ok=True)
    timing_path.write_text(json.dumps([info, seconds]))
    return finish_row(row, model, model_dir, train_items, queries, info, seconds, result_path, train_only, holdout)


def leave_one_out_knn(z: np.ndarray, labels: np.ndarray, queries: np.ndarray, metric: str, k: int = 5) -> float:
    """kNN accuracy of the items marked in `queries` against all the others (themselves left out)."""
    from index import VectorIndex

    labels = np.asarray(labels).astype(str)
    built = VectorIndex.build(z.astype(np.float32), labels=list(labels), metric=metric, kind="flat")
    votes = built.search(z[queries].astype(np.float32), k + 1).labels[:, 1:]
    predicted = np.array([max(sorted(set(v)), key=list(v).count) for v in votes])
    return float(np.mean(predicted == labels[queries]))


def few_reference_scores(model, z_index, train_items, used: np.ndarray, z_query, queries) -> dict:
    """kNN accuracy with only the items fine-tuning saw labelled (`used`) as the index's labelled
    references: as they are, and after `classify`'s default label propagation over the index."""
    from index import KNNClassifier, VectorIndex
    from index.propagation import propagated_index

    labels = [str(c) if u else None for c, u in zip(train_items.labels, used)]
    built = VectorIndex.build(z_index, labels=labels, metric=model.metric, kind="flat")
    truth = np.asarray(queries.labels).astype(str)
    scores = {}
    for name, index in (("refs_only_knn", built), ("refs_only_propagated_knn", propagated_index(built))):
        predicted = KNNClassifier(index, k=5).predict(z_query)
        scores[name] = float(np.mean(predicted.astype(str) == truth))
    return scores


def finish_row(row, model, model_dir, train_items, queries, info, seconds, result_path, train_only,
               holdout=False) -> dict:
    from siamese import embed

    if train_only:
        return {"row": row.name}
    from siamese.retrieval.evaluate import score_embeddings

    history = [line.split(",") for line in (model_dir / "history.csv").read_text().splitlines()]
    header, rows = history[0], history[1:]
    last = dict(zip(header, rows[-1]))
    z_index, z_query = embed(model, train_items), embed(model, queries)
    scores = score_embeddings(z_index, train_items.labels, z_query, queries.labels, metric=model.metric)
    other = "cosine" if model.metric == "l2" else "l2"  # the other metric's kNN accuracy, for exploring
    other_knn = score_embeddings(z_index, train_items.labels, z_query, queries.labels, metric=other).knn_accuracy
    used = None  # the training items whose labels fine-tuning saw (per_class rows)
    if row.per_class:
        from siamese.data.pairs import select_per_class

        used = select_per_class(np.asarray(train_items.labels, dtype=np.int64), row.per_class, seed=row.seed)
    extra = few_reference_scores(model, z_index, train_items, used, z_query, queries) if row.per_class else {}
    # leave-one-out kNN over the training items (with --holdout also the 1000 held out), queries = the
    # items whose labels training never saw: a choice measure that never touches the 2000 queries
    z_all, labels = z_index, np.asarray(train_items.labels)
    if holdout:
        z_all, labels = np.concatenate([z_index, z_query]), np.concatenate([train_items.labels, queries.labels])
    if row.parent is None or row.per_class or holdout:
        unseen = np.ones(len(labels), dtype=bool)
        if row.parent is not None:
            unseen[:len(train_items)] = ~used if row.per_class else False
        extra.update({f"loo_knn_{m}": leave_one_out_knn(z_all, labels, unseen, m) for m in ("l2", "cosine")})
    result = {"row": row.name, **scores.to_dict(), **info, "metric": model.metric, f"knn_{other}": other_knn, **extra,
              "seconds": seconds,
              "epochs": len(rows), "seconds_per_epoch": seconds / len(rows),
              "items_per_second": float(last["items_per_second"]), "val_loss": float(last.get("val_loss", "nan"))}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result))
    return result


def baselines(holdout: bool = False) -> list[dict]:
    from sklearn.decomposition import PCA

    from siamese.retrieval.evaluate import score_embeddings

    train_items, queries = split(holdout)
    raw_train, raw_query = train_items.x.flatten(1).numpy(), queries.x.flatten(1).numpy()
    pca = PCA(32, random_state=0).fit(raw_train)
    rows = []
    for name, a, b in (("raw pixels", raw_train, raw_query),
                       ("PCA-32", pca.transform(raw_train), pca.transform(raw_query))):
        scores = score_embeddings(a, train_items.labels, b, queries.labels).to_dict()
        rows.append({"row": name, **scores, "metric": "l2"})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| row | kNN acc (k=5) | P@1 | MAP@R | NMI | metric | s/epoch | items/s | recon (val) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        recon = (f"{r['recon_before']:.1f} → {r['recon_after']:.1f}" if "recon_before" in r
                 else (f"{r['val_loss']:.1f}" if "val_loss" in r else ""))
        timing = (f"{r['seconds_per_epoch']:.1f} | {r['items_per_second']:.0f}" if "seconds_per_epoch" in r else " | ")
        lines.append(f"| {r['row']} | {100 * r['knn_accuracy']:.2f}% | {100 * r['precision_at_1']:.2f}% | "
                     f"{100 * r['map_at_r']:.2f}% | {r['nmi']:.3f} | {r['metric']} | {timing} | {recon} |")
    return "\n".join(lines)


def summary(rows: dict[str, dict]) -> str:
    seeds = [rows[f"ft-10pc-s{s}"]["knn_accuracy"] for s in range(3) if f"ft-10pc-s{s}" in rows]
    if not seeds:
        return ""
    values = 100 * np.array(seeds)
    return (f"10 labelled items per class over {len(values)} seeds: mean {values.mean():.2f}%, "
            f"min {values.min():.2f}%, max {values.max():.2f}%, std {values.std(ddof=1) if len(values) > 1 else 0:.2f}")


def seed_means(rows: dict[str, dict]) -> str:
    """Each defaults row's measures as mean (min-max) over the seeds that ran."""
    groups: dict[str, list[dict]] = {}
    for name, row in rows.items():
        if name.startswith("default-"):
            groups.setdefault(name.rsplit("-s", 1)[0], []).append(row)
    measures = ("knn_accuracy", "refs_only_knn", "refs_only_propagated_knn", "map_at_r")
    lines = ["| row (seeds) | kNN acc (k=5) | only labelled refs | + propagation | MAP@R | recon (val) |",
             "|---|---|---|---|---|---|"]
    for group, members in groups.items():
        cells = []
        for measure in measures:
            values = 100 * np.array([m[measure] for m in members if measure in m])
            cells.append(f"{values.mean():.2f}% ({values.min():.2f}-{values.max():.2f})" if len(values) else "")
        recon = [(m["recon_before"], m["recon_after"]) for m in members if "recon_before" in m]
        cells.append(" / ".join(f"{a:.1f} → {b:.1f}" for a, b in recon))
        lines.append(f"| {group} ({len(members)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) if groups else ""


def curve_points(rows: dict[str, dict]) -> list[dict]:
    """The cost curve's rows (the default schedule's point is the defaults table's seed-0 autoencoder)."""
    chosen = [r for name, r in rows.items()
              if (name.startswith("curve-e") and "-s" not in name) or name == "default-ae-s0"]
    return sorted(chosen, key=lambda r: r["epochs"])


def knee_table(rows: dict[str, dict]) -> str:
    """The default schedule against the one before it (20 epochs), over the three seeds."""
    groups = {"default": [rows.get(f"default-ae-s{s}") for s in SEEDS],
              "20 epochs": [rows.get("curve-e20")] + [rows.get(f"curve-e20-s{s}") for s in SEEDS[1:]]}
    lines = ["| schedule | epochs | CPU s (1 thread, mean) | leave-one-out kNN, 8000 training items | "
             "kNN acc, 2000 queries |", "|---|---|---|---|---|"]
    for name, members in groups.items():
        if None in members:
            continue

        def cell(values):
            values = [100 * v for v in values]
            return f"{np.mean(values):.2f}% ({min(values):.2f}-{max(values):.2f})"

        loo = cell([r[f"loo_knn_{r['metric']}"] for r in members])
        lines.append(f"| {name} | {members[0]['epochs']} | {np.mean([r['seconds'] for r in members]):.0f} | {loo} | "
                     f"{cell([r['knn_accuracy'] for r in members])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def cost_curve(rows: dict[str, dict]) -> str:
    """The default autoencoder's quality against its training time (one thread: wall s = CPU s)."""
    points = curve_points(rows)
    lines = ["| epochs | CPU s (1 thread) | s/epoch | leave-one-out kNN, 8000 training items | kNN acc, 2000 queries |",
             "|---|---|---|---|---|"]
    for r in points:
        loo = r[f"loo_knn_{r['metric']}"]
        lines.append(f"| {r['epochs']} | {r['seconds']:.0f} | {r['seconds_per_epoch']:.1f} | "
                     f"{100 * loo:.2f}% | {100 * r['knn_accuracy']:.2f}% |")
    return "\n".join(lines) if points else ""


def plot_cost_curve(rows: dict[str, dict], path: Path) -> None:
    """Leave-one-out and query kNN accuracy of the default autoencoder against CPU seconds."""
    from matplotlib.figure import Figure

    points = curve_points(rows)
    if len(points) < 2:
        return
    seconds = [r["seconds"] for r in points]
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    for key, label in (("loo", "leave-one-out, 8000 training items"), ("knn_accuracy", "2000 queries")):
        values = [100 * (r[f"loo_knn_{r['metric']}"] if key == "loo" else r[key]) for r in points]
        ax.plot(seconds, values, marker="o", label=label)
    for r in points:
        ax.annotate(f"{r['epochs']} ep", (r["seconds"], 100 * r["knn_accuracy"]), textcoords="offset points",
                    xytext=(4, -12), fontsize=8)
    ax.axhline(97.5, color="grey", linestyle=":", linewidth=1, label="97.5%")
    ax.margins(x=0.1)
    ax.set_xlabel("CPU seconds (one thread)")
    ax.set_ylabel("kNN accuracy, k=5 (%)")
    ax.set_title("Default autoencoder: quality against training time (MNIST)")
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    parser.add_argument("--jobs", type=int, default=1, help="rows trained in parallel (one thread each)")
    parser.add_argument("--quick", action="store_true", help="2 epochs per model (smoke run)")
    parser.add_argument("--rows", help="comma-separated row names (default: all)")
    parser.add_argument("--train-only", action="store_true", help="train and cache the models, score later")
    parser.add_argument("--holdout", action="store_true", help="items 0-6999 vs 7000-7999, for choosing settings")
    parser.add_argument("--defaults", action="store_true", help="the targets' table: library defaults, 3 seeds")
    args = parser.parse_args()
    work = args.work / (("holdout-" if args.holdout else "") + ("quick" if args.quick else "full"))
    wanted = set(args.rows.split(",")) if args.rows else None
    table_rows = (DEFAULTS + CURVE, DEFAULTS_FT) if args.defaults else (PRETRAINED, FINETUNED)
    stages = [[r for r in everything if (not wanted and r in chosen) or (wanted and r.name in wanted)]
              for everything, chosen in ((PRETRAINED + EXPLORE + DEFAULTS + CURVE, table_rows[0]),
                                         (FINETUNED + EXPLORE_FT + DEFAULTS_FT, table_rows[1]))]
    results: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for stage in stages:
            futures = {r.name: pool.submit(run_row, r, work, args.quick, args.train_only, args.holdout)
                       for r in stage}
            for name, future in futures.items():
                results[name] = future.result()
                if not args.train_only:
                    other = {k: v for k, v in results[name].items()
                             if k in ("knn_l2", "knn_cosine") or k.startswith("loo_")}
                    print(f"{name}: kNN {100 * results[name]['knn_accuracy']:.2f}% ({results[name]['metric']}), "
                          + ", ".join(f"{k} {100 * v:.2f}%" for k, v in other.items()), flush=True)
    if args.train_only:
        return
    ordered = baselines(args.holdout) + [results[r.name] for r in PRETRAINED + EXPLORE + DEFAULTS + CURVE + FINETUNED
                                         + EXPLORE_FT + DEFAULTS_FT if r.name in results]
    report = (f"{table(ordered)}\n\n{summary(results)}\n\n{seed_means(results)}\n\n{cost_curve(results)}\n\n"
              f"{knee_table(results)}\n")
    (work / "quality.md").write_text(report)
    plot_cost_curve(results, work / "cost-curve.png")
    (work / "quality.json").write_text(json.dumps(ordered, indent=1))
    print(report)


if __name__ == "__main__":
    main()
