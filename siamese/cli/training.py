"""The training-side commands: demo, pretrain, finetune (with its pseudo-pair options), evaluate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import (
    add_data_argument,
    add_data_options,
    add_model_argument,
    add_output_dir_option,
    add_train_options,
    default_of,
    load_data,
    load_model_argument,
    train_config,
)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..models.autoencoder import AutoencoderConfig
    from ..training.pretrain import pretrain, resolve_defaults

    config = AutoencoderConfig(variant=args.variant, arch=args.arch, latent_dim=args.latent_dim,
                               widths=tuple(args.widths or ()), noise=args.noise, k=args.k, beta=args.beta,
                               sparsity_weight=args.sparsity_weight, contractive_weight=args.contractive_weight,
                               view_weight=args.view_weight, view_temperature=args.view_temperature,
                               augment=None if args.augment is None else args.augment == "on",
                               augment_strength=args.augment_strength, neighbour_weight=args.neighbour_weight,
                               neighbour_k=args.neighbour_k)
    config = resolve_defaults(config)
    train = train_config(args)  # every flag checked before any data is read
    items = load_data(args, args.data)
    neighbours = f", neighbour term weight {config.neighbour_weight:g}" if config.neighbour_weight else ""
    print(f"pretraining a {config.variant} autoencoder (d={config.latent_dim}{neighbours}) on {len(items)} items "
          f"of shape {items.item_shape} from {items.source}, {args.threads_used}", flush=True)
    model = pretrain(items, config, train, out=args.out, resume=args.resume, progress=progress_of(args),
                     overwrite=args.overwrite)
    print_history(Path(args.out))
    print(f"saved {args.out} (fingerprint {model.fingerprint()[:12]})")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..errors import SiameseError
    from ..training.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(loss=args.loss, distance=args.distance, pos_margin=args.pos_margin,
                            neg_margin=args.neg_margin, miner=args.miner, metric_weight=args.metric_weight,
                            recon_weight=args.recon_weight, pseudo_pairs=pseudo_pair_config(args),
                            self_training=self_training_config(args))
    if args.pairs and args.self_training == "on":
        raise SiameseError("--self-training on propagates labels, and --pairs gives none: use --labels, or "
                           "--self-training auto / off")
    train = train_config(args)  # every flag checked before the model or any data is read
    model = load_model_argument(args.model)
    items = load_data(args, args.data, model)
    labels = args.labels
    if labels == "items":
        labels = True
    print(f"fine-tuning on {len(items)} items from {items.source}, {args.threads_used}", flush=True)
    tuned = finetune(model, items, pairs=args.pairs, labels=labels, labels_per_class=args.labels_per_class,
                     config=config, train=train, out=args.out, resume=args.resume,
                     progress=progress_of(args), overwrite=args.overwrite)
    record = tuned.info["finetune"]
    print_history(Path(args.out), pseudo_pairs=config.pseudo_pairs)
    what = f"{record['n_pairs']} pairs" if record["n_pairs"] else f"{record['n_labelled']} labelled items"
    if record["self_training"]:
        st = record["self_training"]
        what += (f", then again from the pretrained model with {st['n_propagated_labels']} propagated labels added "
                 f"(self-training; confidence >= {st['lowest_confidence_kept']:.3f}; --self-training off: one round)")
    before, after = record["val_reconstruction_before"], record["val_reconstruction_after"]
    recon = f"; validation reconstruction {before:.2f} -> {after:.2f}" if before is not None else ""
    used = record["config"]  # data-dependent defaults resolved
    print(f"fine-tuned on {what}, with {config.loss} loss (metric weight {used['metric_weight']:g}, "
          f"{used['distance']} distance){recon}")
    print(f"saved {args.out} (metric {tuned.metric}, fingerprint {tuned.fingerprint()[:12]})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..retrieval.evaluate import evaluate_model
    from .search import check_k

    check_k(args.k)
    model = load_model_argument(args.model)
    reference = load_data(args, args.data, model, labels=args.labels)
    _require_labels(reference, args.data, "--labels")
    queries = load_data(args, args.query, model, labels=args.query_labels) if args.query else None
    if queries is not None:
        _require_labels(queries, args.query, "--query-labels")
    scores = evaluate_model(model, reference, queries, k=args.k)
    if args.json:
        print(json.dumps(scores.to_dict()))
    else:
        for name, value in scores.to_dict().items():
            print(f"{name:>15}: {value:.4f}")
    return 0


def _require_labels(items, source: str, flag: str) -> None:
    from ..errors import SiameseError

    if not items.has_labels:
        raise SiameseError(f"evaluation needs labels, but the items of {source} have none: give {flag} LABELS.csv "
                           "(header key,label) or a folder with one sub-folder per class")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(out=Path(args.out), dataset=args.dataset, progress=not args.quiet, seed=args.seed,
             overwrite=args.overwrite, threads=args.threads_used)
    return 0


def print_history(model_dir: Path, pseudo_pairs=None) -> None:
    """The run's one-line summary (mean s/epoch) from the history.csv it wrote."""
    import csv

    from ..training.stages import summarize_history

    history = model_dir / "history.csv"
    if history.is_file():
        with history.open(newline="") as fh:
            print(summarize_history(list(csv.DictReader(fh)), pseudo_pairs=pseudo_pairs))


def progress_of(args: argparse.Namespace):
    """Training progress: bars on a terminal, else one printed line per epoch; -q: neither."""
    return False if args.quiet else (lambda line: print(line, flush=True))


def add_pseudo_pair_options(parser) -> None:
    """`siamese finetune` flags; --pseudo-pairs off trains on the given pairs / labels only."""
    from ..training.pseudo_pairs import PseudoPairConfig

    group = parser.add_argument_group("pseudo-pairs")
    group.add_argument("--pseudo-pairs", choices=("on", "off"), default="on",
                       help="also train on confident pairs mined among unlabelled items (mutual nearest neighbours "
                       "= same, far pairs = different); default on")
    group.add_argument("--pseudo-k", type=int, default=default_of(PseudoPairConfig, "k"),
                       help="mutual k-nearest neighbours")
    group.add_argument("--pseudo-positive-quantile", type=float, default=default_of(PseudoPairConfig,
                       "positive_quantile"),
                       help="keep mutual neighbours closer than this quantile of their distances")
    group.add_argument("--pseudo-negative-quantile", type=float, default=default_of(PseudoPairConfig,
                       "negative_quantile"),
                       help="negatives: random pairs beyond this quantile of random-pair distances")
    group.add_argument("--pseudo-ratio", type=float, default=default_of(PseudoPairConfig, "negatives_per_positive"),
                       help="negatives per positive")
    group.add_argument("--pseudo-weight", type=float, default=default_of(PseudoPairConfig, "weight"),
                       help="weight relative to the labelled term")
    group.add_argument("--pseudo-refresh", action="store_true", help="mine again every epoch")


def add_self_training_options(parser) -> None:
    """`siamese finetune` flags for the second round on propagated labels."""
    from ..training.self_training import SelfTrainingConfig

    group = parser.add_argument_group("self-training")
    below = default_of(SelfTrainingConfig, "below_share")
    group.add_argument("--self-training", choices=("auto", "on", "off"), default="auto",
                       help="fine-tune a second time, adding the most confident labels propagated over the first "
                       f"round's embedding; auto: when under {100 * below:g}%% of the items are labelled")
    group.add_argument("--self-training-keep", type=float, default=default_of(SelfTrainingConfig, "keep"),
                       metavar="SHARE", help="share of the propagated labels kept, most confident first")


def self_training_config(args):
    """SelfTrainingConfig from the finetune flags, or None with --self-training off."""
    from ..training.self_training import SelfTrainingConfig

    if args.self_training == "off":
        return None
    if args.self_training == "on":
        return SelfTrainingConfig(keep=args.self_training_keep, below_share=None)
    return SelfTrainingConfig(keep=args.self_training_keep)


def pseudo_pair_config(args):
    """PseudoPairConfig from the finetune flags, or None with --pseudo-pairs off."""
    from ..training.pseudo_pairs import PseudoPairConfig

    if args.pseudo_pairs == "off":
        return None
    return PseudoPairConfig(k=args.pseudo_k, positive_quantile=args.pseudo_positive_quantile,
                            negative_quantile=args.pseudo_negative_quantile, negatives_per_positive=args.pseudo_ratio,
                            weight=args.pseudo_weight, refresh=args.pseudo_refresh)


def register(sub) -> None:
    """Add this module's sub-commands to the `siamese` parser."""
    sub.add_parser("demo", cmd_demo, demo_arguments,
                   help="end to end on the embedded digits: pretrain, fine-tune, index, classify")
    sub.add_parser("pretrain", cmd_pretrain, pretrain_arguments, help="pretrain an autoencoder on unlabeled items")
    sub.add_parser("finetune", cmd_finetune, finetune_arguments,
                   help="fine-tune as a Siamese network on labelled pairs")
    sub.add_parser("evaluate", cmd_evaluate, evaluate_arguments,
                   help="kNN accuracy, precision@1, MAP@R, NMI/ARI of a model's embedding")


def demo_arguments(p: argparse.ArgumentParser) -> None:
    add_output_dir_option(p, "DIR", "demo", required=False, default="siamese-demo",
                          help="folder for the report, plots, model and index")
    p.add_argument("--dataset", default="sklearn:digits", metavar="DATA", help="any DATA source")
    p.add_argument("--seed", type=int, default=0, help="makes runs repeatable")


def pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from ..models.autoencoder import VARIANTS, AutoencoderConfig
    from ..training.loop import TrainConfig
    from ..training.neighbours import LOW_DIM_WEIGHT, LOW_LATENT_DIM
    from ..training.pretrain import MAP_PRETRAIN_EPOCHS, PRETRAIN_EPOCHS

    add_data_argument(p, "unlabeled items to learn from")
    add_output_dir_option(p, "MODEL", "model", help="folder for the model (new, or an earlier model)")
    p.add_argument("--variant", choices=VARIANTS, default=default_of(AutoencoderConfig, "variant"),
                   help="autoencoder variant")
    p.add_argument("--arch", choices=("auto", "mlp", "conv"), default=default_of(AutoencoderConfig, "arch"),
                   help="encoder: conv for images, mlp for vectors (auto picks)")
    p.add_argument("--latent-dim", type=int, default=default_of(AutoencoderConfig, "latent_dim"),
                   help="embedding size d")
    p.add_argument("--widths", type=int, nargs="+", help="MLP hidden sizes or conv channels per stage")
    p.add_argument("--noise", default=default_of(AutoencoderConfig, "noise"),
                   help="denoising corruption: gaussian:STD | mask:P | none")
    p.add_argument("--augment", choices=("on", "off"), help="random shift/rotation of images (default: on for "
                   "denoising)")
    p.add_argument("--augment-strength", type=float, default=default_of(AutoencoderConfig, "augment_strength"),
                   help="scales the random rotation, shift and scaling (1: ±12 degrees, ±2 px on 28x28, ±10%%)")
    p.add_argument("--k", type=int, default=default_of(AutoencoderConfig, "k"), help="ksparse: non-zeros kept")
    p.add_argument("--beta", type=float, default=default_of(AutoencoderConfig, "beta"), help="vae: KL weight")
    p.add_argument("--sparsity-weight", type=float, default=default_of(AutoencoderConfig, "sparsity_weight"),
                   help="sparse: weight of mean |z|_1")
    p.add_argument("--contractive-weight", type=float, default=default_of(AutoencoderConfig, "contractive_weight"),
                   help="contractive: weight of the Jacobian penalty")
    p.add_argument("--view-weight", type=float, default=default_of(AutoencoderConfig, "view_weight"),
                   help="denoising: weight of NT-Xent agreement between two corrupted views (0 = off)")
    p.add_argument("--view-temperature", type=float, default=default_of(AutoencoderConfig, "view_temperature"),
                   help="denoising: NT-Xent temperature of the view term")
    p.add_argument("--neighbour-weight", type=float, default=default_of(AutoencoderConfig, "neighbour_weight"),
                   help=f"weight of the term that keeps items near in input space near in latent space "
                        f"(default: {LOW_DIM_WEIGHT:g} for --latent-dim {LOW_LATENT_DIM} or less, else 0 = off)")
    p.add_argument("--neighbour-k", type=int, default=default_of(AutoencoderConfig, "neighbour_k"),
                   help="input-space neighbours each item is paired with by the neighbour term")
    add_train_options(p, TrainConfig(), epochs_default=f"{PRETRAIN_EPOCHS}, or {MAP_PRETRAIN_EPOCHS} for "
                                                        f"--latent-dim {LOW_LATENT_DIM} or less")
    add_data_options(p)


def finetune_arguments(p: argparse.ArgumentParser) -> None:
    from ..training.finetune import (
        DISTANCES,
        FINETUNE_TRAIN,
        LOSSES,
        MINERS,
        FinetuneConfig,
    )

    add_model_argument(p, "the pretrained model to fine-tune")
    add_data_argument(p, "the items the pairs or labels refer to (all of them, labelled or not)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", metavar="PAIRS.csv", help="header a,b,label over item keys")
    source.add_argument("--labels", metavar="LABELS.csv", help="header key,label; or 'items' for DATA's own labels")
    p.add_argument("--labels-per-class", type=int, metavar="N", help="keep N labelled items per class (seeded)")
    add_output_dir_option(p, "MODEL2", "model", help="folder for the fine-tuned model (new, or an earlier model)")
    p.add_argument("--loss", choices=LOSSES, default=default_of(FinetuneConfig, "loss"),
                   help="pytorch-metric-learning loss")
    p.add_argument("--distance", choices=DISTANCES, default=default_of(FinetuneConfig, "distance"),
                   help="distance the loss and the index use (default: cosine; euclidean for --latent-dim 2)")
    p.add_argument("--miner", choices=MINERS, default=default_of(FinetuneConfig, "miner"), help="pair/triplet miner")
    p.add_argument("--pos-margin", type=float, default=default_of(FinetuneConfig, "pos_margin"),
                   help="contrastive: same pairs closer than this cost nothing")
    p.add_argument("--neg-margin", type=float, default=default_of(FinetuneConfig, "neg_margin"),
                   help="contrastive: different pairs farther than this cost nothing")
    p.add_argument("--metric-weight", type=float, default=default_of(FinetuneConfig, "metric_weight"),
                   help="weight of the metric loss against reconstruction (default: adapts to the labelled "
                        "share: 10 with up to 1.25%% labelled, rising to 50 with every item labelled)")
    p.add_argument("--recon-weight", type=float, default=default_of(FinetuneConfig, "recon_weight"),
                   help="weight of the reconstruction term")
    add_pseudo_pair_options(p)
    add_self_training_options(p)
    add_train_options(p, FINETUNE_TRAIN)
    add_data_options(p)


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from ..retrieval.evaluate import evaluate_model

    add_model_argument(p)
    add_data_argument(p, "labelled reference items (labels from the source or --labels)")
    p.add_argument("--labels", metavar="LABELS.csv", help="labels of DATA, header key,label")
    p.add_argument("--query", metavar="DATA2", help="query items (default: leave-one-out on DATA)")
    p.add_argument("--query-labels", metavar="LABELS.csv", help="labels of DATA2, header key,label")
    p.add_argument("-k", type=int, default=default_of(evaluate_model, "k"), help="neighbours for kNN accuracy")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    add_data_options(p)
