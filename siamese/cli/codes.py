"""CLI commands for the autoencoder's own uses: embed (latent codes) and reconstruct (denoise)."""

from __future__ import annotations

import argparse

from ..errors import SiameseError
from .options import (
    add_data_argument,
    add_data_options,
    add_model_argument,
    add_output_dir_option,
    add_output_file_option,
    load_data,
    load_model_argument,
    source_options,
)


def cmd_embed(args: argparse.Namespace) -> int:
    from ..inference.codes import bytes_per_item, check_dtype, write_codes

    check_dtype(args.dtype)
    if args.skip < 0 or (args.limit is not None and args.limit <= 0):
        raise SiameseError("--skip must be >= 0 and --limit > 0")
    model = load_model_argument(args.model)
    writer = write_codes(model, args.data, args.out, dtype=args.dtype, chunk=args.chunk, progress=not args.quiet,
                         **source_options(args))
    labelled = f", {sum(v is not None for v in writer.labels)} labelled" if writer.labels is not None else ""
    shared = " + a shared scale/offset per dimension" if args.dtype == "int8" else ""
    print(f"wrote {writer.count} x {writer.dim} {args.dtype} codes ({bytes_per_item(writer.dim, args.dtype)} bytes "
          f"per item{shared}{labelled}) to {args.out}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ..inference.reconstruct import reconstruct_to_dir

    model = load_model_argument(args.model)
    items = load_data(args, args.data, model)
    report = reconstruct_to_dir(model, items, args.out, noise=args.noise, seed=args.seed, progress=not args.quiet,
                                overwrite=args.overwrite)
    line = f"wrote {len(report.keys)} reconstructions to {args.out}: mean reconstruction error {report.mean_error:.4g}"
    if report.noise:
        noisy, denoised = float(report.psnr_noisy.mean()), float(report.psnr_denoised.mean())
        line += (f"; PSNR ({report.noise}) noisy {noisy:.2f} dB -> denoised {denoised:.2f} dB "
                 f"({report.psnr_gain:+.2f} dB)")
    print(line)
    return 0


def register(sub) -> None:
    """Add this module's sub-commands to the `siamese` parser."""
    sub.add_parser("embed", cmd_embed, embed_arguments,
                   help="write latent codes (n x d) with keys and labels, in chunks",
                   description="Encode DATA into latent codes: dimensionality reduction or compression. "
                   ".npz holds z, keys, y (labels, when known) and, for int8, the per-dimension scale and "
                   "offset (z = scale * q + offset); .npy holds the codes alone (float32 or float16).")
    sub.add_parser("reconstruct", cmd_reconstruct, reconstruct_arguments,
                   help="write reconstructed (denoised) images and a CSV of per-item errors",
                   description="Reconstruct DATA into DIR: one PNG per item, reconstructions.npy in the items' "
                   "value range and errors.csv (file, key, reconstruction_error). With --noise the items are "
                   "corrupted first and the PSNR of the noisy and the denoised item against the clean one is "
                   "reported too.")


def embed_arguments(p: argparse.ArgumentParser) -> None:
    from ..inference.codes import DTYPES, SUFFIXES
    from ..models.model_input import CHUNK_ITEMS

    add_model_argument(p)
    add_data_argument(p, "the items to encode")
    add_output_file_option(p, "--out", "Z.npz", SUFFIXES, help="a .npz or .npy file", required=True)
    p.add_argument("--dtype", default="float32", metavar="|".join(DTYPES), help="code precision (int8: .npz only)")
    p.add_argument("--chunk", type=int, default=CHUNK_ITEMS, metavar="N",
                   help="items embedded at a time (bounds memory)")
    add_data_options(p)


def reconstruct_arguments(r: argparse.ArgumentParser) -> None:
    add_model_argument(r)
    add_data_argument(r, "the items to reconstruct")
    add_output_dir_option(r, "DIR", "reconstructions", help="folder for the PNGs, reconstructions.npy and errors.csv")
    r.add_argument("--noise", metavar="S", help="corrupt the input first: gaussian:STD or mask:P (e.g. gaussian:0.3)")
    r.add_argument("--seed", type=int, default=0, help="seed of the corruption")
    add_data_options(r)
