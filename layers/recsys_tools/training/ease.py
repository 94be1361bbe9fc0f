"""EASE (Steck, 2019), the closed-form item-item model: B = I - P diag(1 / diag P), P = (X^T X + lambda I)^-1, with X
the binary customer x product matrix and a zero diagonal. A customer with history x (0/1 over products) scores
product j as x @ B[:, j]. Used as a baseline in the report and as a ranking feature (pruned to each product's largest
neighbours, so serving scores a history with one bincount).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp

Floats = npt.NDArray[np.float32]
Ints32 = npt.NDArray[np.int32]

LAMBDAS = (100.0, 250.0, 500.0, 1000.0, 2000.0)  # the grid chosen from on a validation period
NEIGHBOURS = 100  # entries of B kept per history product in the artifact (pruned EASE)
MAX_PRODUCTS = 8_000  # B comes from inverting a dense [P, P] matrix: about 2 GB at 8k products; above, no EASE


def gram(bought: sp.csr_matrix) -> npt.NDArray[np.float64]:
    """X^T X of the binary purchase matrix [customers, products]."""
    x = (bought > 0).astype(np.float64)
    return np.asarray((x.T @ x).todense())


def ease_weights(gram_matrix: npt.NDArray[np.float64], lam: float) -> Floats:
    """B [products, products] for L2 weight ``lam`` (row i: what having bought product i adds to every product)."""
    a = gram_matrix.copy()
    a[np.diag_indices_from(a)] += lam
    p: npt.NDArray[np.float64] = scipy.linalg.inv(a, overwrite_a=True, check_finite=False)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    weights: Floats = b.astype(np.float32)
    return weights


def ease_scores(bought: sp.csr_matrix, weights: Floats) -> Floats:
    """Scores [customers, products] of the customers' binary histories."""
    scores: Floats = np.asarray((bought > 0).astype(np.float32) @ weights, dtype=np.float32)
    return scores


def prune(weights: Floats, k: int = NEIGHBOURS) -> tuple[Ints32, Floats]:
    """Each row's ``k`` largest entries: neighbour columns [P, k] and their weights [P, k]."""
    k = min(k, weights.shape[1])
    columns = np.argpartition(-weights, k - 1, axis=1)[:, :k].astype(np.int32)
    return columns, np.take_along_axis(weights, columns, axis=1).astype(np.float32)


def pruned_matrix(columns: Ints32, values: Floats) -> sp.csr_matrix:
    """The pruned B as a sparse [P, P] matrix (batch scoring: ``bought @ pruned_matrix``)."""
    size = columns.shape[0]
    rows = np.repeat(np.arange(size), columns.shape[1])
    return sp.csr_matrix((values.ravel(), (rows, columns.ravel())), shape=(size, size))
