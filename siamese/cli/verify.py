"""CLI commands for calibrated verification and deployment (calibrate, verify, export, index rebuild),
plus the pseudo-pair flags of `finetune` and the open-set flags of `classify`."""

from __future__ import annotations

import argparse
import json

from ..errors import SiameseError
from .options import (
    add_chunk_size_option,
    add_data_argument,
    add_data_options,
    add_index_argument,
    add_model_argument,
    add_output_dir_option,
    add_output_file_option,
    chunk_items_argument,
    data_kwargs,
    load_data,
    load_model_argument,
    source_options,
)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..data.pairs import read_pairs_csv
    from ..retrieval.calibration import (
        calibrate_distances,
        model_pair_distances,
        plot_calibration,
        save_calibration,
    )

    model = load_model_argument(args.model)
    items = load_data(args, args.data, model)
    pairs = read_pairs_csv(args.pairs, items.keys)
    distances = model_pair_distances(model, items, pairs)
    calibration = calibrate_distances(distances, pairs.label, metric=model.metric, target=args.target,
                                      model_fingerprint=model.fingerprint())
    path = save_calibration(calibration, args.model)
    if args.json:
        print(json.dumps(calibration.to_dict()))
    else:
        print(calibration.report())
        print(f"wrote {path}")
    if args.plot:
        print(f"wrote {plot_calibration(distances, pairs.label, calibration, args.plot)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..data.loading import load_items
    from ..inference.embed import embed
    from ..models.metrics import pair_distances
    from ..retrieval.calibration import load_calibration

    model = load_model_argument(args.model)
    calibration = load_calibration(args.model, model)
    items = load_items([args.a, args.b], **data_kwargs(args, model))
    if len(items) != 2:
        raise SiameseError(f"verify needs two readable items, got {len(items)}")
    z = embed(model, items)
    distance = float(pair_distances(z[:1], z[1:], calibration.metric)[0])
    same = calibration.is_same(distance)
    p_same = calibration.confidence(distance)
    record = {"a": items.keys[0], "b": items.keys[1], "distance": distance, "metric": calibration.metric,
              "threshold": calibration.threshold, "same": same, "p_same": p_same}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{'same' if same else 'different'}: distance {distance:.4g} ({calibration.metric}) "
              f"{'<=' if same else '>'} threshold {calibration.threshold:.4g}; P(same) {p_same:.3f}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..retrieval.bundle import export_bundle, load_bundle

    out = export_bundle(args.model, args.index, args.out, overwrite=args.overwrite, untrusted_index=args.untrusted)
    bundle = load_bundle(out, untrusted_index=args.untrusted)
    calibrated = "with" if bundle.calibration is not None else "without"
    print(f"exported {len(bundle.index)} indexed items, model {bundle.model.fingerprint()[:12]} and "
          f"{len(bundle.manifest['files'])} checksummed files ({calibrated} calibration) -> {out}")
    return 0


def cmd_index_rebuild(args: argparse.Namespace) -> int:
    from ..retrieval.calibration import find_calibration
    from ..retrieval.indexing import rebuild_index

    model = load_model_argument(args.model)
    index = rebuild_index(args.index, model, args.data, calibration=find_calibration(args.model, model),
                          chunk_size=chunk_items_argument(args, model), progress=not args.quiet,
                          untrusted=args.untrusted, **source_options(args))
    print(f"re-embedded {len(index)} items with model {model.fingerprint()[:12]} -> {args.index}")
    return 0


def add_rebuild_parser(index_sub) -> None:
    """`siamese index rebuild`, added to the `index` group by search.register."""
    index_sub.add_parser("rebuild", cmd_index_rebuild, index_rebuild_arguments,
                         help="re-embed a stale index's items with MODEL in place (same keys, labels, attrs)")


def index_rebuild_arguments(r: argparse.ArgumentParser) -> None:
    add_index_argument(r, "the index to re-embed in place")
    add_model_argument(r, "the model to embed with now")
    add_data_argument(r, "the items the index was built from")
    add_chunk_size_option(r)
    r.add_argument("--untrusted", action="store_true",
                   help="an index from elsewhere: rebuild it from vectors.npy, never parse its faiss file")
    add_data_options(r)


def register(sub) -> None:
    """Add this module's sub-commands to the `siamese` parser."""
    sub.add_parser("calibrate", cmd_calibrate, calibrate_arguments,
                   help="same/different distance threshold from labelled pairs (ROC/PR report)")
    sub.add_parser("verify", cmd_verify, verify_arguments,
                   help="are two items the same? distance, answer and confidence (needs calibrate)")
    sub.add_parser("export", cmd_export, export_arguments,
                   help="one directory with model, index, calibration and a checksummed manifest")


def _target(value: str) -> str:
    from ..retrieval.calibration import parse_target

    try:
        parse_target(value)
    except SiameseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def calibrate_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "the model to calibrate (calibration.json is written into it)")
    add_data_argument(p, "the items PAIRS.csv refers to")
    p.add_argument("--pairs", required=True, metavar="PAIRS.csv", help="header a,b,label over DATA's item keys")
    p.add_argument("--target", type=_target, default="f1", help="f1 | eer | precision=P | recall=R")
    add_output_file_option(p, "--plot", "ROC.png", (".png",), help="write ROC and precision-recall curves")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_options(p)


def verify_arguments(v: argparse.ArgumentParser) -> None:
    add_model_argument(v, "a calibrated model (siamese calibrate)")
    v.add_argument("a", metavar="A", help="item file")
    v.add_argument("b", metavar="B", help="item file")
    v.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_options(v)


def export_arguments(e: argparse.ArgumentParser) -> None:
    add_model_argument(e)
    add_index_argument(e, "the index MODEL built")
    add_output_dir_option(e, "BUNDLE", "bundle", help="folder for the bundle (new, or an earlier bundle)")
    e.add_argument("--untrusted", action="store_true",
                   help="an index from elsewhere: rebuild it from vectors.npy, never parse its faiss file")


# ---------------------------------------------------------------- open-set options of `siamese classify`


def add_open_set_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("open set (both rules off by default)")
    group.add_argument("--unknown-distance", metavar="auto|calibrated|X|qQ",
                       help="answer unknown when the nearest labelled item is farther than: qQ = the Q quantile of "
                       "the labelled indexed items' distances to their nearest other labelled item; auto = q0.95; "
                       "calibrated = the same/different pair threshold of `siamese calibrate` (much looser: pairs "
                       "are farther apart than nearest neighbours); X = a distance")
    group.add_argument("--unknown-recon-quantile", type=float, metavar="Q",
                       help="answer unknown when the reconstruction error exceeds the Q quantile of the indexed "
                       "items' errors (read back from the source the index was built from)")
    group.add_argument("--unknown-label", default="unknown", help="the open-set answer")


# on MNIST with two digits held out, q0.95 gave unknown-detection F1 0.80 (best possible 0.82); the
# pair threshold of `siamese calibrate` gave 0.00 (BENCHMARKS.md, benchmarks/openset.py)
AUTO_UNKNOWN_QUANTILE = 0.95


def unknown_distance(args: argparse.Namespace, model, index) -> float | None:
    """The --unknown-distance threshold in the index's units, or None."""
    value = args.unknown_distance
    if value is None:
        return None
    if value == "auto":
        value = f"q{AUTO_UNKNOWN_QUANTILE}"
    if value == "calibrated":
        from ..retrieval.calibration import (
            Calibration,
            check_calibration,
            find_calibration,
        )

        calibration = find_calibration(args.model, model)
        if calibration is None and "calibration" in index.info:
            calibration = Calibration.from_dict(index.info["calibration"], f"{args.index} info['calibration']")
            check_calibration(calibration, model, f"the calibration stored in {args.index}")
        if calibration is None:
            raise SiameseError(f"--unknown-distance calibrated needs a calibrated model; run `siamese calibrate "
                               f"{args.model} DATA --pairs PAIRS.csv` first, or give a distance")
        return calibration.threshold
    if value.startswith("q"):
        from ..retrieval.openset import index_distance_quantile

        return index_distance_quantile(index, _number(value[1:], "--unknown-distance qQ"))
    return _number(value, "--unknown-distance")


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SiameseError(f"{name} expects auto, calibrated, a number or qQ (e.g. q0.95), got {text!r}") from None


def open_set_labels(args: argparse.Namespace, model, index, classifier, items, z, predicted):
    """Apply the reconstruction rule (the distance rule is the classifier's) and report both."""
    import numpy as np

    from ..retrieval.openset import predict_open_set, reconstruction_threshold

    recon_threshold = None
    if args.unknown_recon_quantile is not None:
        reference = _indexed_items(args, model, index)
        recon_threshold = reconstruction_threshold(model, reference, args.unknown_recon_quantile)
    if classifier.max_distance is None and recon_threshold is None:
        return predicted
    result = predict_open_set(classifier, model, items, z=z, recon_threshold=recon_threshold)
    rules = []
    if classifier.max_distance is not None:
        rules.append(f"{int(result.unknown_by_distance.sum())} farther than {classifier.max_distance:.4g} from "
                     "every labelled item")
    if recon_threshold is not None:
        rules.append(f"{int(result.unknown_by_reconstruction.sum())} with reconstruction error above "
                     f"{recon_threshold:.4g}")
    print(f"answered {classifier.unknown!r} for {int(result.unknown.sum())} of {len(items)} items "
          f"({'; '.join(rules)})")
    return np.asarray(result.labels, dtype=object)


def _indexed_items(args: argparse.Namespace, model, index) -> list:
    """The indexed items, one ItemSet per source they were indexed from (build and add record them)."""
    from ..retrieval.item_sources import indexed_item_sets

    return indexed_item_sets(index, **data_kwargs(args, model))
