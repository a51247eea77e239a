"""CLI commands that work with an index: index build/add/info, query, classify, anomaly, plot."""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import SiameseError
from .options import (
    add_data_argument,
    add_data_options,
    add_index_argument,
    add_index_open_options,
    add_model_argument,
    add_output_file_option,
    data_kwargs,
    default_of,
    load_data,
    load_model_argument,
)


def _index_for(path: str, model, args: argparse.Namespace, shards: bool = False):
    from ..retrieval.indexing import open_index

    return open_index(path, model, force=args.force, untrusted=args.untrusted, shards=shards)


def _items_by_keys(index, keys: np.ndarray, model, args) -> np.ndarray:
    """Images of indexed items (any shape of keys, None = blank) for plots, each read back from the
    source it was indexed from."""
    from ..retrieval.item_sources import item_arrays

    return item_arrays(index, keys, **data_kwargs(args, model))


def cmd_query(args: argparse.Namespace) -> int:
    from ..data.loading import load_items
    from ..inference.embed import embed

    if bool(args.items) == bool(args.key):
        raise SiameseError("give item files to query with, or --key KEY of an indexed item (not both)")
    check_k(args.k)
    model = load_model_argument(args.model)
    index = _index_for(args.index, model, args, shards=True)  # a folder of shards is searched as one
    if args.key:  # each key's own item is left out of its results
        check_k(args.k, len(index) - 1, f"the {len(index) - 1} other items of the index (each --key item is "
                "left out of its own neighbours)")
    else:
        check_k(args.k, len(index))
    if args.key:
        vectors, names, query_x = index.get(args.key), list(args.key), None
        k = args.k + 1  # the item itself comes back first
    else:
        queries = load_items(args.items, **data_kwargs(args, model))
        vectors, names, query_x, k = embed(model, queries), queries.keys, queries.x.numpy(), args.k
    hits = index.search(vectors, k)
    ids, keys, labels, distances = hits.ids, hits.keys, hits.labels, hits.distances
    if args.key:
        keep = keys != np.asarray(names, dtype=object)[:, None]
        ids, keys, labels, distances = (np.stack([row[m][:args.k] for row, m in zip(a, keep)])
                                        for a in (ids, keys, labels, distances))
    results = [{"query": name, "neighbors": [
        {"rank": r + 1, "id": int(i), "key": str(kk), "label": lab, "distance": float(d)}
        for r, (i, kk, lab, d) in enumerate(zip(ids[q], keys[q], labels[q], distances[q])) if i >= 0]}
        for q, name in enumerate(names)]  # id -1: an approximate index found fewer than k
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            print(f"query {result['query']}:")
            for hit in result["neighbors"]:
                label = f"  label {hit['label']}" if hit["label"] is not None else ""
                print(f"  {hit['rank']:>3}. {hit['key']:<40} distance {hit['distance']:.4g}{label}")
    if args.plot:
        from ..plots import plot_neighbors

        neighbours = _items_by_keys(index, keys, model, args)
        if query_x is None:
            query_x = _items_by_keys(index, np.asarray(names, dtype=object)[:, None], model, args)[:, 0]
        what = "query" if len(names) == 1 else "queries"
        plot_neighbors(query_x, neighbours, args.plot, distances=distances, neighbor_labels=labels,
                       title=f"{len(names)} {what} and their {args.k} nearest items")
        print(f"wrote {args.plot}")
    return 0


def check_k(k: int, available: int | None = None, what: str | None = None, flag: str = "-k") -> None:
    """-k (or -n) in the user's terms: at least 1 and, given `available`, at most that many."""
    if k < 1:
        raise SiameseError(f"{flag} must be at least 1, got {k}")
    if available is not None and k > available:
        what = what or f"the index ({available} items)"
        advice = f"give {flag} {available} or less" if available >= 1 else "there is nothing to show"
        raise SiameseError(f"{flag} {k} is larger than {what}; {advice}")


def cmd_classify(args: argparse.Namespace) -> int:
    from index import KNNClassifier

    from ..inference.embed import embed
    from . import verify as cli_verify

    check_k(args.k)
    model = load_model_argument(args.model)
    index = _index_for(args.index, model, args)
    items = load_data(args, args.data, model, labels=args.labels)
    n_labelled = int(index.labelled_items()[0].size)
    propagate = args.propagate == "on" or (args.propagate == "auto" and n_labelled < len(index) / 2)
    if propagate:
        from index.propagation import propagated_index

        index = propagated_index(index, k=args.propagate_k)
        print(f"propagated {n_labelled} labels over the {args.propagate_k}-nearest-neighbour graph of the "
              f"{len(index)} indexed items")
    classifier = KNNClassifier(index, k=args.k, weights=args.weights, unknown=args.unknown_label,
                               max_distance=cli_verify.unknown_distance(args, model, index))
    z = embed(model, items, progress=not args.quiet)
    proba = classifier.predict_proba(z)
    classes = np.asarray(classifier.classes_, dtype=object)
    predicted = cli_verify.open_set_labels(args, model, index, classifier, items, z, classes[np.argmax(proba, axis=1)])
    confidence = proba.max(axis=1)
    if args.out:
        from index.atomic import atomic_file

        with atomic_file(args.out, "w", suffixes=(".csv",)) as fh:
            writer = csv.writer(fh)
            writer.writerow(["key", "predicted", "confidence"] + (["label"] if items.has_labels else []))
            for i, key in enumerate(items.keys):
                row = [key, predicted[i], f"{confidence[i]:.4f}"]
                writer.writerow(row + ([items.labels[i] or ""] if items.has_labels else []))
    counts = Counter(predicted.tolist())
    print(f"classified {len(items)} items by their {args.k} nearest labelled neighbours "
          f"({n_labelled} of {len(index)} indexed items carry labels)")
    print("predicted per class: " + ", ".join(f"{c}: {counts[c]}" for c in classes if counts[c]))
    if items.has_labels:
        mask = items.labelled_mask()
        truth = np.asarray(items.labels, dtype=object)[mask]
        accuracy = float(np.mean(predicted[mask].astype(str) == truth.astype(str)))
        print(f"accuracy against the {int(mask.sum())} known labels: {100 * accuracy:.2f}%")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_anomaly(args: argparse.Namespace) -> int:
    from ..inference.anomaly import score_items

    check_k(args.k)
    model = load_model_argument(args.model)
    index = _index_for(args.index, model, args) if args.index else None
    items = load_data(args, args.data, model)
    scores = score_items(model, items, index=index, k=args.k, whiten=args.whiten == "on", progress=not args.quiet)
    order = scores.top(len(items))
    out = args.out or "anomalies.csv"
    from index.atomic import atomic_file

    with atomic_file(out, "w", suffixes=(".csv",)) as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "key", "reconstruction_error", "knn_distance", "combined"])
        for rank, i in enumerate(order, 1):
            knn = f"{scores.knn_distance[i]:.6g}" if scores.knn_distance is not None else ""
            writer.writerow([rank, scores.keys[i], f"{scores.reconstruction[i]:.6g}", knn, f"{scores.combined[i]:.4f}"])
    space = ", whitened" if args.whiten == "on" else ""
    print(f"most anomalous of {len(items)} items (reconstruction error"
          f"{' and distance to the ' + str(args.k) + ' nearest indexed items' + space if index else ''}):")
    for rank, i in enumerate(order[:args.top], 1):
        knn = f"  knn distance {scores.knn_distance[i]:.4g}" if scores.knn_distance is not None else ""
        print(f"  {rank:>3}. {scores.keys[i]:<40} reconstruction {scores.reconstruction[i]:.6g}{knn}")
    if args.plot:
        from ..plots import plot_score_histogram

        plot_score_histogram(scores.reconstruction, args.plot, score_name="reconstruction error",
                             title=f"reconstruction error of {len(items)} items")
        print(f"wrote {args.plot}")
    print(f"wrote {out}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .. import plots
    from ..inference.embed import embed, reconstruct

    check_k(args.n, flag="-n")
    if args.what == "neighbors":
        check_k(args.k)
        if not args.index:
            raise SiameseError("`siamese plot neighbors` needs --index INDEX")
    model = load_model_argument(args.model)
    if args.what == "curves":
        path = plots.plot_curves(Path(args.model) / "history.csv", args.out)
    elif args.what == "samples":
        path = _plot_samples(model, args)
    else:
        if not args.data:
            raise SiameseError(f"`siamese plot {args.what}` needs DATA")
        items = load_data(args, args.data, model)
        if args.what == "latent":
            path = plots.plot_latent(embed(model, items), items.labels, args.out, method=args.method,
                                     title=f"latent space of {Path(args.model).name}")
        elif args.what == "reconstructions":
            subset = items.subset(range(min(args.n, len(items))))
            path = plots.plot_reconstructions(subset.x.numpy(), reconstruct(model, subset), args.out, n=args.n)
        else:
            index = _index_for(args.index, model, args)
            check_k(args.k, len(index))
            queries = items.subset(range(min(args.n, len(items))))
            hits = index.search(embed(model, queries), args.k)
            neighbours = _items_by_keys(index, hits.keys, model, args)
            path = plots.plot_neighbors(queries.x.numpy(), neighbours, args.out, distances=hits.distances,
                                        neighbor_labels=hits.labels, query_labels=queries.labels)
    print(f"wrote {path}")
    return 0


def _plot_samples(model, args):
    """VAE draws from the prior; a 2-D VAE also gets its decoded latent manifold beside them."""
    from .. import plots
    from ..inference.generate import latent_manifold, sample

    images = sample(model, args.n, seed=args.seed)
    path = plots.plot_image_grid(images, args.out, title=f"{args.n} samples decoded from z ~ N(0, I)")
    if model.latent_dim == 2:
        grid, _ = latent_manifold(model, side=20)
        out = Path(args.out)
        manifold = plots.plot_image_grid(grid, out.with_name(f"{out.stem}-manifold{out.suffix}"), ncols=20,
                                         title="decoded latent plane: z at Gaussian quantiles 0.05 .. 0.95 "
                                         "(z[0] left to right, z[1] bottom to top)")
        print(f"wrote {manifold}")
    return path


def register(sub) -> None:
    """Add this module's sub-commands to the `siamese` parser."""
    sub.add_parser("query", cmd_query, query_arguments, help="nearest indexed items of item files or of an indexed key")
    sub.add_parser("classify", cmd_classify, classify_arguments,
                   help="label items by a vote of their k nearest labelled indexed items")
    sub.add_parser("anomaly", cmd_anomaly, anomaly_arguments,
                   help="reconstruction-error and kNN-distance anomaly scores")
    sub.add_parser("plot", cmd_plot, plot_arguments,
                   help="latent map, reconstructions, neighbours, training curves, VAE samples",
                   description="Plot a model's latent map, reconstructions, neighbours, training curves or VAE "
                   "samples. samples (VAE only): decode -n draws z ~ N(0, I) into a grid; a 2-D VAE also gets the "
                   "classic decoded-manifold grid over its latent plane, written to PNG-manifold.png.")


def query_arguments(q: argparse.ArgumentParser) -> None:
    add_index_argument(q)
    add_model_argument(q, "the model that built INDEX")
    q.add_argument("items", metavar="ITEM_FILE", nargs="*", help="image (or item) files to query with")
    q.add_argument("--key", action="append", help="query with an indexed item (repeatable)")
    q.add_argument("-k", type=int, default=9, help="neighbours shown (a 3 x 3 grid with --plot)")
    q.add_argument("--json", action="store_true", help="print one JSON object per query")
    add_output_file_option(q, "--plot", "GRID.png", (".png",), help="write the query-and-neighbours image grid")
    add_index_open_options(q, force_help="query even if MODEL did not build INDEX")
    add_data_options(q)


def classify_arguments(c: argparse.ArgumentParser) -> None:
    from index.knn import KNNClassifier
    from index.propagation import propagate_labels

    from .verify import add_open_set_options

    add_index_argument(c, "a labelled index (siamese index build --labels, or a labelled DATA)")
    add_model_argument(c, "the model that built INDEX")
    add_data_argument(c, "the items to classify")
    c.add_argument("-k", type=int, default=default_of(KNNClassifier, "k"), help="neighbours that vote")
    c.add_argument("--weights", choices=("uniform", "distance"), default="uniform", help="how neighbours' votes count")
    c.add_argument("--labels", metavar="LABELS.csv", help="true labels of DATA, to report accuracy")
    c.add_argument("--propagate", choices=("auto", "on", "off"), default="auto",
                   help="spread the index's labels over its kNN graph first (auto: when under half are labelled)")
    c.add_argument("--propagate-k", type=int, default=default_of(propagate_labels, "k"),
                   help="neighbours per item in the propagation graph")
    add_output_file_option(c, "--out", "PRED.csv", (".csv",), help="write key,predicted,confidence per item")
    add_index_open_options(c)
    add_open_set_options(c)
    add_data_options(c)


def anomaly_arguments(n: argparse.ArgumentParser) -> None:
    from ..inference.anomaly import score_items

    add_model_argument(n)
    add_data_argument(n, "the items to score")
    n.add_argument("--index", metavar="INDEX", help="also score the distance to the k nearest indexed items")
    n.add_argument("-k", type=int, default=default_of(score_items, "k"),
                   help="indexed neighbours averaged for the kNN distance")
    n.add_argument("--whiten", choices=("on", "off"), default="on",
                   help="measure the kNN distance after whitening the latent space by the indexed items' mean and "
                   "covariance (Mahalanobis); off: in the index's own metric")
    n.add_argument("--top", type=int, default=10, help="items printed")
    add_output_file_option(n, "--out", "SCORES.csv", (".csv",), help="all scores (default anomalies.csv)")
    add_output_file_option(n, "--plot", "HIST.png", (".png",), help="write a histogram of the scores")
    add_index_open_options(n)
    add_data_options(n)


def plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("latent", "reconstructions", "neighbors", "curves", "samples"),
                   help="what to draw")
    add_model_argument(p)
    add_data_argument(p, "the items to draw (not needed for curves and samples)", nargs="?")
    add_output_file_option(p, "--out", "PNG", (".png",), required=True, help="the image to write")
    p.add_argument("--index", metavar="INDEX", help="neighbors: the index to search")
    p.add_argument("--method", choices=("auto", "pca", "tsne"), default="auto", help="latent: projection above 2-D")
    p.add_argument("-n", type=int, default=16, help="items, queries or samples shown")
    p.add_argument("-k", type=int, default=9, help="neighbors: neighbours per query")
    p.add_argument("--seed", type=int, default=0, help="which items are drawn")
    add_index_open_options(p)
    add_data_options(p)
