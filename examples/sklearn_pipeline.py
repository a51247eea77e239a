"""siamese in scikit-learn: a Pipeline tuned by GridSearchCV, and semi-supervised kNN with -1 labels.

    python examples/sklearn_pipeline.py

On scikit-learn's digits (1797 8x8 images as rows of 64 pixels): a Pipeline(SiameseEmbedder,
KNeighborsClassifier) whose grid search asks whether fine-tuning on the labels beats the
autoencoder alone, then a SiameseKNNClassifier that sees only 100 labels (-1 for the other 1337
training digits) against a plain KNeighborsClassifier on the same 100 labelled digits. About a
minute on two cores; one torch thread per estimator (n_threads=1) is the fast choice for data this
small, with GridSearchCV running two fits at a time.
"""

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from siamese.sklearn import SiameseEmbedder, SiameseKNNClassifier


def main() -> None:
    started = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

    # all labels known: the embedder fine-tunes on them, kNN votes in its embedding
    pipeline = make_pipeline(SiameseEmbedder(n_threads=1), KNeighborsClassifier())
    grid = {"siameseembedder__finetune_epochs": [0, 10]}  # autoencoder alone vs fine-tuned
    search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2).fit(X_train, y_train)
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  {params}: cross-validated accuracy {score:.3f}")
    print(search.best_params_, f"test accuracy {search.score(X_test, y_test):.3f}")

    # 100 labels, -1 for the other 1337 digits: they shape the embedding and carry the labels further
    y_few = np.where(np.arange(len(y_train)) < 100, y_train, -1)
    semi = SiameseKNNClassifier(n_threads=1).fit(X_train, y_few)
    print(f"test accuracy {semi.score(X_test, y_test):.3f}")
    plain = KNeighborsClassifier().fit(X_train[:100], y_train[:100])
    print(f"  plain KNeighborsClassifier on the same 100 labelled digits: {plain.score(X_test, y_test):.3f}")
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
