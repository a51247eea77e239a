"""Bounds on what one input file may make the loaders allocate, checked against its header before reading.

A small file must not cost a huge allocation: a compressed image, .npz member or .gz IDX file can claim
gigabytes in a few kilobytes, and a CSV field sets the width of whatever holds it. The loaders compare what
a header claims with what the file can honestly hold and with these bounds, and refuse in one line.
Kept free of heavy imports so the command line can read its defaults from here.
"""

from __future__ import annotations

# Pixels (H x W of the first frame) an image may have before it is decoded; --max-pixels raises it.
# Pillow's decompression-bomb threshold: 0.25 GiB of RGBA pixels.
MAX_PIXELS = 89_478_485

# Side of the size images are resized to (--image-size, a model's preprocessing): one 4096 x 4096 RGB item
# is already 200 MB of float32, and a typo such as --image-size 40000 must not ask for 19 GB per image.
MAX_IMAGE_SIDE = 4096

# Characters in one key or label (CSV cells, LABELS.csv, PAIRS.csv, .npz keys): keys name items in
# indexes, label files and messages, and a field's width must not decide how much a table costs.
# At most 4 UTF-8 bytes a character, so every accepted key fits index.metadata.MAX_TEXT_BYTES (4096).
MAX_FIELD_CHARS = 1024

# Bytes a compressed .npz member or a .gz IDX file may inflate to when read whole, counted as float32
# for item arrays (what loading makes of them). Larger data belongs in a .npy, read by byte range.
MAX_INFLATED_BYTES = 256 << 20
