"""Training progress that means something: the mean loss per example over each epoch.

TFRS's ``train_step`` reports the loss of the last batch, and the retrieval task sums its loss over the batch, so
Keras' printed ``loss`` depends on the batch size and on which batch came last. ``EpochLoss`` (passed to
``model.fit``) adds up the batch losses of an epoch and divides by the number of examples; the result is in the
epoch's logs as ``loss_per_example`` (so Keras prints it at the end of each epoch and ``model.history`` keeps it) and,
inside ``recording()``, in the list that context yields (the evaluation report plots it; the manifest keeps it).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # as in training.model: TFRS needs tf-keras; set before TensorFlow loads

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import tensorflow as tf

Epochs = list[dict[str, float]]

_RUNS: ContextVar[dict[str, Epochs] | None] = ContextVar("training_runs", default=None)


@contextmanager
def recording() -> Iterator[dict[str, Epochs]]:
    """Collects the per-epoch records of every ``EpochLoss`` created inside the block, by fit name (a repeated name
    gets " (2)", " (3)", ...)."""
    runs: dict[str, Epochs] = {}
    token = _RUNS.set(runs)
    try:
        yield runs
    finally:
        _RUNS.reset(token)


class EpochLoss(tf.keras.callbacks.Callback):  # type: ignore[misc]
    """Mean task loss per example of each epoch (sum of the batch losses, which must be summed over each batch, /
    ``examples``; the regularisation loss,
    which is per batch, is reported separately as its mean over the epoch's batches)."""

    def __init__(self, examples: int, name: str = "fit") -> None:
        super().__init__()
        self._supports_tf_logs = True  # accumulate tensors: no host sync per batch
        self.examples = max(int(examples), 1)
        self.epochs: Epochs = []
        self._loss: Any = 0.0
        self._regularization: Any = 0.0
        self._batches = 0
        runs = _RUNS.get()
        if runs is not None:
            unique = name if name not in runs else f"{name} ({sum(n.startswith(name) for n in runs) + 1})"
            runs[unique] = self.epochs

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._loss, self._regularization, self._batches = 0.0, 0.0, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self._loss += logs.get("loss", 0.0)
        self._regularization += logs.get("regularization_loss", 0.0)
        self._batches += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        record = {
            "epoch": epoch + 1,
            "loss_per_example": round(float(self._loss) / self.examples, 6),
            "regularization_per_batch": round(float(self._regularization) / max(self._batches, 1), 6),
        }
        self.epochs.append(record)
        if logs is not None:
            logs["loss_per_example"] = record["loss_per_example"]
