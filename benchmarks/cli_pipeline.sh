#!/usr/bin/env bash
# The MNIST protocol through the command line only (the CLI reproduces the quality benchmark).
#   bash benchmarks/cli_pipeline.sh [WORKDIR]
# (a) encoder fine-tuned with 10 labelled items per class, index over the first 8000 items with all
#     their labels, `siamese classify` on the last 2000;
# (b) the same encoder, but only the 100 labelled items carry labels in the index (the other 7900
#     are unlabelled; classify propagates the labels over the index's kNN graph).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-benchmarks/work/cli}
DATA=mnist-idx:tests/data/mnist
mkdir -p "$W"
[ -f "$W/ae/model.safetensors" ] || siamese pretrain $DATA --limit 8000 --out "$W/ae" -q
[ -f "$W/ft/model.safetensors" ] || siamese finetune "$W/ae" $DATA --limit 8000 --labels items \
    --labels-per-class 10 --pseudo-pairs off --out "$W/ft" -q  # the protocol: pairs from labels only
siamese index build "$W/ft" $DATA --limit 8000 --out "$W/index-all" -q
siamese classify "$W/index-all" "$W/ft" $DATA --skip 8000 --out "$W/pred-all.csv" -q
siamese index build "$W/ft" $DATA --limit 8000 --labels "$W/ft/labels-used.csv" --out "$W/index-100" -q
siamese index info "$W/index-100" | grep -E "count|labelled"
siamese classify "$W/index-100" "$W/ft" $DATA --skip 8000 --out "$W/pred-100.csv" -q
siamese classify "$W/index-100" "$W/ft" $DATA --skip 8000 --propagate off -q
