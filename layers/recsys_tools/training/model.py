"""The TFRS two-tower retrieval model.

Candidate tower: product id embedding + mean of the product name's token embeddings.
Query tower: weighted mean of the customer's purchase-history embeddings (a table separate from the candidate one;
weight = log(1 + purchases) x recency decay; computed for all customers at once as a sparse [customers, products]
matrix times the table), + country embedding. Nothing in it is per customer, so serving computes a query from any
purchase history at request time, with the tables exported here (``Towers``).
Training examples are the distinct (customer, product) pairs; the target product is left out of the history of
its own example (else the model only learns to copy the history), and the in-batch sampled softmax is corrected for
popularity (logQ: ``candidate_sampling_probability``).

TFRS 0.7 refuses Keras 3, so ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported (tf-keras).
"""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_tools.training.data import vocabulary
from recsys_tools.training.export import Towers
from recsys_tools.training.params import TrainParams
from recsys_tools.training.progress import EpochLoss

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Features:
    """Integer-coded inputs of the model, built from a cleaned purchase frame (no TensorFlow)."""

    customers: list[str]
    products: list[str]
    countries: list[str]  # the country vocabulary
    country: Ints  # [customers] index into countries
    tokens: Ints  # [P, T] token ids, 0 for padding
    num_countries: int
    num_tokens: int
    pair_customer: Ints  # distinct (customer, product) pairs, sorted: the training examples and the history
    pair_product: Ints
    pair_weight: Floats  # history weight of the pair
    weight_sum: Floats  # [C] total history weight per customer
    product_probability: Floats  # [P] share of training pairs, for the logQ correction


def build_features(purchases: pd.DataFrame, params: TrainParams, names: dict[str, str]) -> Features:
    customers = vocabulary(purchases["customer_id"])
    products = vocabulary(purchases["product_id"])
    c_index = pd.Index(customers)
    p_index = pd.Index(products)
    c = c_index.get_indexer(purchases["customer_id"])
    p = p_index.get_indexer(purchases["product_id"])
    end = purchases["timestamp"].max()
    age_days = (end - purchases["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    frame = pd.DataFrame({"c": c, "p": p, "age": age_days})
    pairs = frame.groupby(["c", "p"], sort=True).agg(n=("age", "size"), age=("age", "min")).reset_index()
    pairs["w"] = np.log1p(pairs["n"]) * np.exp2(-pairs["age"] / params.recency_half_life_days)

    country_of = purchases.groupby("customer_id")["country"].agg(lambda s: s.value_counts().index[0])
    country_vocab = vocabulary(country_of)
    country = pd.Index(country_vocab).get_indexer(country_of.reindex(customers)).astype(np.int64)

    token_lists = [TOKEN.findall(names.get(product, "").lower()) for product in products]
    counts = pd.Series([t for ts in token_lists for t in set(ts)]).value_counts()
    token_vocab = {t: i + 1 for i, t in enumerate(counts[counts >= 2].index)}  # 0 = padding/rare
    max_tokens = max(1, *(len(ts) for ts in token_lists))
    tokens = np.zeros((len(products), max_tokens), dtype=np.int64)
    for row, ts in enumerate(token_lists):
        ids = [token_vocab[t] for t in ts if t in token_vocab]
        tokens[row, : len(ids)] = ids

    probability = np.bincount(pairs["p"], minlength=len(products)).astype(np.float32)
    return Features(
        customers=customers,
        products=products,
        countries=country_vocab,
        country=country,
        tokens=tokens,
        num_countries=len(country_vocab),
        num_tokens=len(token_vocab) + 1,
        pair_customer=pairs["c"].to_numpy(np.int64),
        pair_product=pairs["p"].to_numpy(np.int64),
        pair_weight=pairs["w"].to_numpy(np.float32),
        weight_sum=np.bincount(pairs["c"], weights=pairs["w"], minlength=len(customers)).astype(np.float32),
        product_probability=probability / probability.sum(),
    )


class TwoTowerModel(tfrs.Model):  # type: ignore[misc]
    def __init__(self, features: Features, params: TrainParams) -> None:
        super().__init__()
        self.params = params
        dim, num_products = params.embedding_dim, len(features.products)
        regularizer = tf.keras.regularizers.l2(params.l2) if params.l2 else None

        def embedding(rows: int) -> tf.keras.layers.Embedding:
            return tf.keras.layers.Embedding(rows, dim, embeddings_regularizer=regularizer)

        self.product_embedding = embedding(num_products)
        self.history_embedding = self.add_weight(
            name="history_embedding",
            shape=(num_products, dim),
            initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05, seed=params.seed),
            regularizer=regularizer,
        )
        self.token_embedding = embedding(features.num_tokens) if params.use_names else None
        self.country_embedding = embedding(features.num_countries) if params.use_country else None
        # the weighted history as a sparse [customers, products] matrix: one sparse matmul gives every customer's
        # weighted history sum, far cheaper than gathering per-example histories
        self.history_matrix = tf.sparse.SparseTensor(
            np.stack([features.pair_customer, features.pair_product], axis=1),
            features.pair_weight,
            (len(features.customers), num_products),
        )
        self.weight_sum = tf.constant(features.weight_sum)
        self.country = tf.constant(features.country)
        self.tokens = tf.constant(features.tokens)
        self.task = tfrs.tasks.Retrieval(temperature=params.temperature, remove_accidental_hits=True)

    def candidate(self, products: tf.Tensor) -> tf.Tensor:
        embedded = self.product_embedding(products)
        if self.token_embedding is not None:
            tokens = tf.gather(self.tokens, products)
            mask = tf.cast(tokens > 0, tf.float32)[..., None]
            total = tf.reduce_sum(self.token_embedding(tokens) * mask, axis=1)
            embedded += total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return embedded

    def query(
        self, customers: tf.Tensor, exclude: tf.Tensor | None = None, exclude_weight: tf.Tensor | None = None
    ) -> tf.Tensor:
        """Weighted mean of the history embeddings, leaving out ``exclude`` (a product with its history weight)."""
        totals = tf.gather(tf.sparse.sparse_dense_matmul(self.history_matrix, self.history_embedding), customers)
        weights = tf.gather(self.weight_sum, customers)
        if exclude is not None and exclude_weight is not None:
            totals -= exclude_weight[:, None] * tf.gather(self.history_embedding, exclude)
            weights -= exclude_weight
        embedded = totals / tf.maximum(weights, 1e-6)[:, None]
        if self.country_embedding is not None:
            embedded += self.country_embedding(tf.gather(self.country, customers))
        return embedded

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        customers, products = inputs["customer"], inputs["product"]
        leave_out = self.params.leave_target_out
        return self.task(
            self.query(customers, products if leave_out else None, inputs["weight"] if leave_out else None),
            self.candidate(products),
            candidate_sampling_probability=inputs["probability"] if self.params.logq_correction else None,
            candidate_ids=products,
            compute_metrics=False,
        )


def train_model(features: Features, params: TrainParams, run: str = "retrieval") -> TwoTowerModel:
    tf.keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()  # same data + seed -> same model, whatever the thread timing
    model = TwoTowerModel(features, params)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=params.learning_rate))
    examples = {
        "customer": features.pair_customer,
        "product": features.pair_product,
        "probability": features.product_probability[features.pair_product],
        "weight": features.pair_weight,
    }
    dataset = (
        tf.data.Dataset.from_tensor_slices(examples)
        .shuffle(len(features.pair_customer), seed=params.seed, reshuffle_each_iteration=True)
        .batch(params.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    verbose = 2 if params.verbose == 1 and not sys.stdout.isatty() else params.verbose  # no bar in log files
    model.fit(dataset, epochs=params.epochs, verbose=verbose, callbacks=[EpochLoss(len(features.pair_customer), run)])
    return model


def towers(model: TwoTowerModel, features: Features) -> Towers:
    """The trained tables serving needs, and every training customer's query (full history, as of the data's end)
    as sample queries."""
    batch = 4096
    queries = [
        model.query(tf.range(i, min(i + batch, len(features.customers)))).numpy()
        for i in range(0, len(features.customers), batch)
    ]
    dim = model.params.embedding_dim
    countries = (
        model.country_embedding.embeddings.numpy()
        if model.country_embedding is not None
        else np.zeros((len(features.countries), dim), np.float32)
    )
    return Towers(
        products=features.products,
        product_embeddings=model.candidate(tf.range(len(features.products))).numpy(),
        history_embeddings=model.history_embedding.numpy(),
        countries=features.countries,
        country_embeddings=countries,
        sample_queries=np.concatenate(queries),
    )


def fit(
    purchases: pd.DataFrame, params: TrainParams, names: dict[str, str], run: str = "retrieval"
) -> tuple[Towers, dict[str, Any]]:
    """Train on ``purchases`` and return the towers plus vocabulary sizes for the manifest (``run`` names the fit in
    the progress records)."""
    features = build_features(purchases, params, names)
    model = train_model(features, params, run)
    sizes = {"customers": len(features.customers), "products": len(features.products), "tokens": features.num_tokens}
    return towers(model, features), sizes
