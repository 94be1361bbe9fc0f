"""What `recsys train` and `recsys evaluate` are parameterised by: the model's hyper-parameters, the variants tried,
the CSV column names and the data defaults. Imports neither TensorFlow nor pandas, so the command line can build its
flags (and answer ``--help``) from these without loading either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from recsys.settings import DEFAULT_ARTIFACTS_ROOT

DEFAULT_DATA = DEFAULT_ARTIFACTS_ROOT / "data" / "online_retail.csv.gz"
DEFAULT_SPLIT_DATE = "2011-11-01"  # the evaluation protocol of the shipped data
K_MAX = 200  # columns returned by the recommend signatures


@dataclass(frozen=True)
class Columns:
    """CSV column names; the defaults are the Online Retail headers. Optional columns may be absent."""

    customer: str = "CustomerID"
    product: str = "StockCode"
    timestamp: str = "InvoiceDate"
    quantity: str = "Quantity"
    name: str = "Description"
    country: str = "Country"
    invoice: str = "InvoiceNo"
    price: str = "UnitPrice"


@dataclass(frozen=True)
class TrainParams:
    """Model and training hyper-parameters (defaults: tuned on the Online Retail time split)."""

    embedding_dim: int = 64
    epochs: int = 6
    batch_size: int = 2048
    learning_rate: float = 0.02  # 0.05 diverged in one of two runs (see the evaluation report's variants)
    l2: float = 0.5  # on whole embedding tables, against a loss summed over the batch: small values do nothing
    temperature: float = 0.1
    recency_half_life_days: float = 90.0
    use_names: bool = True
    use_country: bool = True
    logq_correction: bool = True
    leave_target_out: bool = True
    validation_days: int = 30  # the ranking stage's validation period before the data's end (two_stage)
    ranker_width: int = 64  # the ranking heads' MLP: this many units, then half as many, then the logit
    ranker_epochs: int = 6
    ranker_batch_size: int = 1024
    ranker_learning_rate: float = 3e-3
    ease_neighbours: int = 100  # EASE weights kept per product for the ranking feature
    seed: int = 42
    verbose: int = 1  # 0 silent; otherwise the mean loss per example after each epoch (and a bar on a terminal)

    @classmethod
    def tiny(cls) -> TrainParams:
        """Seconds-long training for test fixtures."""
        return cls(
            embedding_dim=8,
            epochs=2,
            batch_size=64,
            learning_rate=0.05,
            l2=1e-3,
            ranker_width=8,
            ranker_epochs=2,
            ranker_batch_size=256,
            verbose=0,
        )


Variant = Callable[[TrainParams], TrainParams]

# every variant tried, as a change of the shipped parameters (reported by `recsys evaluate --variants all`)
VARIANTS: dict[str, Variant] = {
    "two-tower ID-only (no names, no country, no logQ)": lambda p: replace(
        p, use_names=False, use_country=False, logq_correction=False
    ),
    "two-tower, no product names": lambda p: replace(p, use_names=False),
    "two-tower, no logQ correction": lambda p: replace(p, logq_correction=False),
    "two-tower, target kept in history": lambda p: replace(p, leave_target_out=False),
}
