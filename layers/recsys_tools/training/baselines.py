"""Baseline scorers for the time-split evaluation. Each returns scores [customers, products] (higher is better)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Floats = npt.NDArray[np.float32]


def popularity(counts: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> Floats:
    """Number of distinct customers who bought each product, the same for everyone."""
    distinct = np.asarray((counts > 0).sum(axis=0), dtype=np.float32).ravel()
    scores: Floats = np.broadcast_to(distinct, (len(rows), counts.shape[1])).copy()
    return scores


def buy_again(counts: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> Floats:
    """The customer's own purchase counts, ties (and never-bought products) broken by popularity."""
    pop = popularity(counts, rows)
    own: Floats = np.asarray(counts[rows].toarray(), dtype=np.float32)
    return own + pop / (float(pop.max()) + 1.0)


def ials(
    counts: sp.csr_matrix,
    rows: npt.NDArray[np.int64],
    *,
    factors: int = 64,
    regularization: float = 0.05,
    alpha: float = 1.0,
    iterations: int = 15,
    seed: int = 42,
) -> Floats:
    """implicit's ALS on log-scaled counts (confidence 1 + alpha * log1p(count))."""
    from implicit.cpu.als import AlternatingLeastSquares  # heavy import, only when asked
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    confidence = counts.astype(np.float32).copy()
    confidence.data = alpha * np.log1p(confidence.data)
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; a threaded BLAS underneath slows it down
        model = AlternatingLeastSquares(
            factors=factors, regularization=regularization, iterations=iterations, random_state=seed
        )
        model.fit(confidence.tocsr(), show_progress=False)
    users = np.asarray(model.user_factors, dtype=np.float32)[rows]
    return users @ np.asarray(model.item_factors, dtype=np.float32).T
