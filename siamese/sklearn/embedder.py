"""SiameseEmbedder: the autoencoder (and, with labels, the fine-tuned Siamese encoder) as a
scikit-learn transformer, X (n_samples, n_features) -> embeddings (n_samples, latent_dim)."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator

import faiss
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..data.item_set import ItemSet
from ..data.normalization import Normalization
from ..inference.embed import embed
from ..models.autoencoder import Autoencoder, AutoencoderConfig
from ..training.finetune import FINETUNE_TRAIN, FinetuneConfig, finetune
from ..training.loop import TrainConfig
from ..training.pretrain import pretrain
from . import inputs


@contextlib.contextmanager
def cpu_threads(n_threads: int | None) -> Iterator[None]:
    """torch and faiss use `n_threads` CPU threads inside the block (None: leave them alone); the
    previous counts come back afterwards, so an estimator changes no process-wide setting."""
    if n_threads is None:
        yield
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
    before_torch, before_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(int(n_threads))
    faiss.omp_set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        faiss.omp_set_num_threads(before_faiss)


class SiameseEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Learn an embedding of tabular (or flattened image) rows: pretrain an autoencoder on every row,
    then, when `y` carries labels, fine-tune it as a Siamese network on the labelled rows.

    `fit(X, y=None)`: X of shape (n_samples, n_features) is scaled per feature into [0, 1] (the
    autoencoder reconstructs with binary cross-entropy), `siamese.pretrain` trains an autoencoder of
    `variant` on all rows, and when y holds labels of at least two classes, `siamese.finetune`
    fine-tunes it on them (contrastive loss + reconstruction + pseudo-pairs among the unlabelled
    rows). In y, -1 marks an unlabelled row, as in sklearn.semi_supervised; y=None, or
    finetune_epochs=0, pretrains only. `transform(X)` returns float32 embeddings of shape
    (n_samples, latent_dim).

    Parameters mirror the library's configs and take their defaults from them: `variant`,
    `latent_dim`, `widths` (AutoencoderConfig), `epochs` (None: pretrain's default), `batch_size`,
    `lr` (TrainConfig),
    `finetune_epochs`, `finetune_lr` (FINETUNE_TRAIN), `finetune_config` (a FinetuneConfig; None =
    its defaults). arch="mlp" treats rows as vectors; with `image_shape=(C, H, W)` (C*H*W =
    n_features) rows are images and arch="conv" or "auto" uses the convolutional encoder.
    `random_state`: an int is the training seed (same seed, data and thread count: identical
    embeddings); None or a RandomState draws one. `n_threads`: torch/faiss CPU threads during fit and
    transform (None: as set in the process). `verbose`: > 0 shows progress bars.

    Attributes: `model_` (the trained siamese.Autoencoder), `n_features_in_`, `feature_names_in_`
    (DataFrame input only), `scale_offset_` and `scale_` (float64 (n_features,), the per-feature
    scaling), `finetuned_` (bool: fine-tuning ran).
    """

    def __init__(self, *, variant: str = AutoencoderConfig.variant, latent_dim: int = AutoencoderConfig.latent_dim,
                 arch: str = "mlp", widths: tuple[int, ...] = AutoencoderConfig.widths,
                 image_shape: tuple[int, ...] | None = None, epochs: int | None = TrainConfig.epochs,
                 finetune_epochs: int = FINETUNE_TRAIN.epochs, batch_size: int = TrainConfig.batch_size,
                 lr: float = TrainConfig.lr, finetune_lr: float = FINETUNE_TRAIN.lr,
                 finetune_config: FinetuneConfig | None = None, random_state=TrainConfig.seed,
                 n_threads: int | None = None, verbose: int = 0) -> None:
        self.variant = variant
        self.latent_dim = latent_dim
        self.arch = arch
        self.widths = widths
        self.image_shape = image_shape
        self.epochs = epochs
        self.finetune_epochs = finetune_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.finetune_config = finetune_config
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def fit(self, X, y=None) -> SiameseEmbedder:
        """Pretrain on every row of X (n_samples, n_features); fine-tune on the labelled rows of y
        (n_samples,), -1 = unlabelled, when it has at least two classes. Returns self."""
        if y is None or self._skips_finetuning():
            X, codes = inputs.check_X(self, X, reset=True), None
        else:
            X, y = inputs.check_X_y(self, X, y)
            codes, _ = inputs.label_codes(y)
            if not (codes >= 0).any():
                codes = None  # nothing labelled: pretraining alone, as with y=None
            else:
                inputs.require_two_classes(codes, type(self).__name__, "fine-tune (or pass finetune_epochs=0)")
        offset, scale = inputs.fit_scaling(X)
        with cpu_threads(self.n_threads):
            model = self._train(inputs.scale(X, offset, scale), codes, inputs.seed_of(self.random_state))
        self.model_, self.scale_offset_, self.scale_, self.finetuned_ = model, offset, scale, codes is not None
        return self

    def transform(self, X) -> np.ndarray:
        """Embeddings of the rows of X (n_samples, n_features): float32 (n_samples, latent_dim)."""
        check_is_fitted(self)
        X = inputs.check_X(self, X, reset=False)
        with cpu_threads(self.n_threads):
            return embed(self.model_, inputs.scale(X, self.scale_offset_, self.scale_))

    @property
    def _n_features_out(self) -> int:
        """Output width for get_feature_names_out (siameseembedder0, ...)."""
        return self.model_.latent_dim

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32, as `embed` hands them off
        return tags

    # -- training ----------------------------------------------------------------------------------

    def _skips_finetuning(self) -> bool:
        return isinstance(self.finetune_epochs, numbers.Integral) and self.finetune_epochs == 0

    def _item_shape(self, n_features: int) -> tuple[int, ...]:
        if self.image_shape is None:
            if self.arch == "conv":
                raise ValueError("arch='conv' needs image_shape=(channels, height, width); rows of X are vectors")
            return (n_features,)
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or math.prod(shape) != n_features:
            raise ValueError(f"image_shape must be (channels, height, width) with channels * height * width = "
                             f"n_features ({n_features}), got {self.image_shape!r}")
        return shape

    def _configs(self, seed: int) -> tuple[AutoencoderConfig, TrainConfig, FinetuneConfig, TrainConfig | None]:
        """The library's configs for these parameters, built (and so checked) before any training."""
        if self.finetune_config is not None and not isinstance(self.finetune_config, FinetuneConfig):
            raise ValueError(f"finetune_config must be a siamese FinetuneConfig or None, "
                             f"got {type(self.finetune_config).__name__}")
        config = AutoencoderConfig(variant=self.variant, arch=self.arch, latent_dim=self.latent_dim,
                                   widths=tuple(self.widths))
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed)
        tune = None if self._skips_finetuning() else \
            TrainConfig(epochs=self.finetune_epochs, batch_size=self.batch_size, lr=self.finetune_lr, seed=seed)
        return config, train, self.finetune_config or FinetuneConfig(), tune

    def _train(self, x: np.ndarray, codes: np.ndarray | None, seed: int) -> Autoencoder:
        """pretrain on all rows of x (scaled, float32), then finetune with codes (-1 = unlabelled)."""
        config, train, finetune_config, tune = self._configs(seed)
        n = len(x)
        labels = None if codes is None else [str(c) if c >= 0 else None for c in codes.tolist()]
        items = ItemSet(torch.from_numpy(x.reshape(n, *self._item_shape(x.shape[1]))), [str(i) for i in range(n)],
                        labels, Normalization(), f"X passed to {type(self).__name__}.fit")
        progress = bool(self.verbose)
        model = pretrain(items, config, train, progress=progress)
        if codes is None or tune is None:
            return model
        return finetune(model, items, labels=True, config=finetune_config, train=tune, progress=progress)
