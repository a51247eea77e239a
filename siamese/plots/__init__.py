"""Figures for looking at what a model learned, in two families:

- image grids (siamese.plots.grids): nearest neighbours, reconstructions, VAE samples, decoded
  latent manifolds;
- 2-D maps and curves (siamese.plots.charts): the latent map, training curves, anomaly-score
  histograms and ROC curves.

Everything is drawn with matplotlib's object API, so nothing here touches pyplot or the global
backend. Inputs are numpy arrays; each function writes one PNG atomically and returns its Path.
"""

from .charts import plot_curves, plot_latent, plot_roc, plot_score_histogram
from .grids import plot_image_grid, plot_neighbors, plot_reconstructions

__all__ = ["plot_curves", "plot_image_grid", "plot_latent", "plot_neighbors", "plot_reconstructions", "plot_roc",
           "plot_score_histogram"]
