"""Training progress: the mean loss per example of each epoch, logged and kept (Keras prints a running mean of
per-batch losses, which for a loss summed over the batch, as TFRS' retrieval task's, is not per example)."""

from __future__ import annotations

import logging
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs tf-keras; set before TensorFlow is imported

import tensorflow as tf

log = logging.getLogger(__name__)


class MeanLoss(tf.keras.callbacks.Callback):  # type: ignore[misc]
    """Logs and keeps (``losses``) each epoch's mean loss per example. ``summed_over`` is the batch size when the
    loss is summed over a batch (exact when every batch is full; the last one is usually smaller)."""

    def __init__(self, what: str, summed_over: int = 1) -> None:
        super().__init__()
        self.what = what
        self.summed_over = summed_over
        self.losses: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = float((logs or {}).get("loss", float("nan"))) / self.summed_over
        self.losses.append(round(loss, 5))
        log.info("%s: epoch %d, mean loss per example %.4f", self.what, epoch + 1, loss)
