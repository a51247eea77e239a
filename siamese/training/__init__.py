"""Stage 1 (pretrain) and stage 2 (finetune, pseudo-pairs) on one training loop, with data-parallel
runs."""
