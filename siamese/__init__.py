"""siamese: metric learning on unlabeled data.

Pretrain an encoder as an autoencoder, fine-tune it as a Siamese network on a few same/different
pairs, and search, classify and score items with a FAISS index (the `index` package).
"""

from .data.loading import ItemSet, Normalization, load_items  # noqa: E402
from .errors import SiameseError  # noqa: E402
from .inference.codes import load_codes, save_codes, write_codes  # noqa: E402
from .inference.embed import embed, reconstruct  # noqa: E402
from .inference.generate import latent_manifold, sample  # noqa: E402
from .inference.reconstruct import reconstruct_to_dir  # noqa: E402
from .models.autoencoder import VARIANTS, Autoencoder, AutoencoderConfig  # noqa: E402
from .models.checkpoint import load_model
from .models.networks import NetworkConfig  # noqa: E402
from .models.saving import save_model
from .retrieval.bundle import Bundle, export_bundle, load_bundle  # noqa: E402
from .retrieval.calibration import Calibration, calibrate, load_calibration, save_calibration  # noqa: E402
from .retrieval.indexing import add_items, build_index, open_index, rebuild_index  # noqa: E402
from .training.finetune import FinetuneConfig, finetune  # noqa: E402
from .training.loop import TrainConfig  # noqa: E402
from .training.pretrain import pretrain  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "Bundle", "Calibration", "calibrate", "export_bundle", "load_bundle", "load_calibration", "rebuild_index",
    "save_calibration",
    "VARIANTS", "Autoencoder", "AutoencoderConfig", "FinetuneConfig", "ItemSet", "NetworkConfig", "Normalization",
    "SiameseError", "TrainConfig", "add_items", "build_index", "embed", "finetune", "latent_manifold", "load_codes",
    "load_items", "load_model", "open_index", "pretrain", "reconstruct", "reconstruct_to_dir", "sample", "save_codes",
    "save_model", "write_codes",
]
