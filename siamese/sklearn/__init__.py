"""scikit-learn estimators over the siamese pipeline: SiameseEmbedder (a transformer) and
SiameseKNNClassifier (semi-supervised, -1 = unlabelled). Nothing else in the library imports this
package; it needs scikit-learn >= 1.6 (validate_data, estimator tags)."""

import sklearn

if tuple(int(part) for part in sklearn.__version__.split(".")[:2] if part.isdigit()) < (1, 6):
    raise ImportError(f"siamese.sklearn needs scikit-learn >= 1.6, found {sklearn.__version__}; "
                      "pip install 'scikit-learn>=1.6'")

from .classifier import SiameseKNNClassifier
from .embedder import SiameseEmbedder
from .expected_failures import EXPECTED_FAILED_CHECKS

__all__ = ["EXPECTED_FAILED_CHECKS", "SiameseEmbedder", "SiameseKNNClassifier"]
