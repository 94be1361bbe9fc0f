"""The model's arithmetic on arrays, numpy only: a purchase history as arrays, the query tower, the ranking stage's
candidates, features and heads. Serving (``recsys.recommender``) and training (``recsys_tools.training.two_stage``)
both call these functions, so the features a ranker is trained on are the features it is served with.

Ranking features of a candidate product for one customer (``FEATURES``, in order): whether and how much the customer
bought it (log counts and quantity, log days since the last purchase, log counts decayed with 30- and 90-day
half-lives, as of the request time), its EASE item-item score from the customer's history (z-scored and log-ranked
among the candidates, and raw), its popularity (log distinct customers overall and in the 30 days before the model's
data end, and their difference: "trending") and three customer-level values (log distinct products, log purchase
events, log days since the latest purchase).

The query tower and the features are computed for many customers at once (``Histories``: their arrays end to end,
per-customer sums, minima and ranks as segment operations); one customer is a batch of one, so a customer's query and
features are the same numbers whether computed alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, repeat
from typing import TYPE_CHECKING

from recsys.domain import DAY_SECONDS, HALF_LIVES_DAYS, ProductHistory

if TYPE_CHECKING:  # numpy comes with TensorFlow: modules that only type against this one stay light
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]
    Ints = npt.NDArray[np.int64]

FEATURES = (
    "bought",
    "log_count",
    "log_quantity",
    "log_days_since",
    "log_decayed_30d",
    "log_decayed_90d",
    "ease_z",
    "ease_log_rank",
    "ease_raw",
    "log_popularity",
    "log_popularity_recent",
    "trending",
    "customer_log_products",
    "customer_log_events",
    "customer_log_days_since_any",
)
NEVER_DAYS = 730.0  # "days since bought" of a product never bought
VIEWS = ("all", "new")  # the ranking heads: every candidate, or only never-bought ones (exclude_purchased)


# What the model reads of one product in a purchase history: its numbers, in ``recsys.domain.ProductHistory``'s order
# (purchase events, quantity, last purchase and ref in epoch seconds, then the decayed counts as of ref per
# HALF_LIVES_DAYS).
Bought = Sequence[float]
BOUGHT_WIDTH = len(ProductHistory._fields)


@dataclass(frozen=True)
class HistoryArrays:
    """The products of one history the model knows, as arrays sorted by product row, as of a time ``now``."""

    rows: Ints
    count: Floats
    quantity: Floats
    days_since: Floats  # days since the last purchase (0 for a purchase recorded in the future)
    decayed: Floats  # [len(HALF_LIVES_DAYS), N] decayed counts as of now

    @classmethod
    def of(cls, history: Mapping[str, Bought], product_rows: Mapping[str, int], now: float) -> HistoryArrays | None:
        """None when the model knows none of the products (``Histories.read`` of one)."""
        batch, _ = Histories.read([history], product_rows, now)
        return None if batch is None else cls(batch.rows, batch.count, batch.quantity, batch.days_since, batch.decayed)


@dataclass(frozen=True)
class Histories:
    """Several customers' ``HistoryArrays`` end to end: customer i's products are ``starts[i]:starts[i] + sizes[i]``
    (every customer has at least one)."""

    rows: Ints
    count: Floats
    quantity: Floats
    days_since: Floats
    decayed: Floats  # [len(HALF_LIVES_DAYS), N]
    sizes: Ints

    @classmethod
    def of(cls, histories: Sequence[HistoryArrays]) -> Histories:
        import numpy as np

        if len(histories) == 1:
            one = histories[0]
            return cls(one.rows, one.count, one.quantity, one.days_since, one.decayed, np.asarray([len(one.rows)]))
        return cls(
            rows=np.concatenate([h.rows for h in histories]),
            count=np.concatenate([h.count for h in histories]),
            quantity=np.concatenate([h.quantity for h in histories]),
            days_since=np.concatenate([h.days_since for h in histories]),
            decayed=np.concatenate([h.decayed for h in histories], axis=1),
            sizes=np.fromiter((len(h.rows) for h in histories), np.int64, len(histories)),
        )

    @classmethod
    def read(
        cls, histories: Sequence[Mapping[str, Bought]], product_rows: Mapping[str, int], now: float
    ) -> tuple[Histories | None, list[int]]:
        """The histories that hold a product the model knows, each product's numbers as of ``now`` (elementwise
        arithmetic: a product's are the same whichever histories are read with it), sorted by product row within a
        history, and their indexes in ``histories``; None if none does. Every product's numbers read into one array,
        without a Python object per product."""
        import numpy as np

        size = sum(map(len, histories))
        owner = np.repeat(np.arange(len(histories)), np.fromiter(map(len, histories), np.int64, len(histories)))
        rows = np.fromiter(map(product_rows.get, chain.from_iterable(histories), repeat(-1)), np.int64, size)
        bought = chain.from_iterable(chain.from_iterable(history.values() for history in histories))
        numbers = np.fromiter(bought, np.float64, size * BOUGHT_WIDTH).reshape(size, BOUGHT_WIDTH)
        known = np.flatnonzero(rows >= 0)
        known = known[np.argsort(owner[known] * (len(product_rows) + 1) + rows[known])]  # by history, then row
        counts = np.bincount(owner[known], minlength=len(histories))
        usable = np.flatnonzero(counts).tolist()
        if not usable:
            return None, usable
        count, quantity, last, ref, *decayed = numbers[known].T
        half_lives = np.asarray(HALF_LIVES_DAYS, dtype=np.float64)[:, None] * DAY_SECONDS
        since_ref = np.maximum(now - ref, 0.0)
        return cls(
            rows=rows[known],
            count=count.astype(np.float32),
            quantity=quantity.astype(np.float32),
            days_since=(np.maximum(now - last, 0.0) / DAY_SECONDS).astype(np.float32),
            # decayed as of each ref, then now
            decayed=(np.stack(decayed) * np.exp2(-since_ref / half_lives)).astype(np.float32),
            sizes=counts[usable],
        ), usable

    def __len__(self) -> int:
        return len(self.sizes)

    @cached_property  # the features read them several times a batch
    def starts(self) -> Ints:
        return _starts(self.sizes)

    @cached_property
    def customer(self) -> Ints:
        """[N] the customer (index) of each product."""
        return _segment_ids(self.sizes)

    def customer_rows(self, customer: int) -> Ints:
        """The product rows customer ``customer`` bought, sorted."""
        start = int(self.starts[customer])
        return self.rows[start : start + int(self.sizes[customer])]


def query_embedding(
    history: HistoryArrays, history_vectors: Floats, half_life_days: float, country_vector: Floats | None
) -> Floats:
    """One customer's query (``query_embeddings`` of a batch of one)."""
    import numpy as np

    countries = None if country_vector is None else country_vector[None]
    query: Floats = query_embeddings(Histories.of([history]), history_vectors, half_life_days, countries)[0]
    return query.astype(np.float32)


def query_embeddings(
    histories: Histories, history_vectors: Floats, half_life_days: float, country_vectors: Floats | None
) -> Floats:
    """[customers, D] the query tower: the mean of the products' history embeddings (``history_vectors`` [D, products]:
    a product's is a column) weighted by log(1 + times bought) x 2^(-days since last bought / half-life), plus the
    customer's country's embedding (``country_vectors`` [customers, D]: zeros for an unknown country; None: none). Ages
    count from the customer's latest purchase: the weighted mean is the same, and an old history does not underflow to
    zero."""
    import numpy as np

    starts, customer = histories.starts, histories.customer
    ages = histories.days_since
    youngest = np.minimum.reduceat(ages, starts)[customer]
    weights = np.log1p(histories.count) * np.exp2(-(ages - youngest) / np.float32(half_life_days))
    # [D, N]: each sum runs over contiguous values (numpy's same pairwise sums, several times faster than over rows)
    weighted = np.take(history_vectors, histories.rows, axis=1)
    weighted *= weights
    sums = np.add.reduceat(weighted, starts, axis=1).T
    totals = np.maximum(np.add.reduceat(weights, starts), np.float32(1e-6))
    queries: Floats = sums / totals[:, None]
    if country_vectors is not None:
        queries = queries + country_vectors
    return queries.astype(np.float32)


@dataclass(frozen=True)
class ProductTables:
    """The ranking stage's product-side tables (rows as the model's product vocabulary)."""

    log_popularity: Floats  # [P] log1p(distinct customers) over the training data
    log_popularity_recent: Floats  # [P] the same over its last 30 days
    ease_columns: npt.NDArray[np.int32]  # [P, N] the products each product's purchase lifts most (pruned EASE)
    ease_values: Floats  # [P, N] by how much


@dataclass(frozen=True)
class Head:
    """A ranking head: standardised features, then a ReLU MLP to one logit (the exported Keras weights). Computed
    in float32 with the standardisation and biases folded into the kernels (``_layers``): the SavedModel's arithmetic
    up to rounding (pinned by tests)."""

    mean: Floats
    std: Floats
    kernels: tuple[Floats, ...]
    biases: tuple[Floats, ...]

    def logits(self, features: Floats) -> Floats:
        """One logit a row, LOGIT_ROWS rows at a time (each layer's output stays in cache)."""
        import numpy as np

        out: Floats = np.empty(len(features), np.float32)
        for start in range(0, len(features), LOGIT_ROWS):
            out[start : start + LOGIT_ROWS] = self._logits(features[start : start + LOGIT_ROWS])
        return out

    @cached_property
    def _layers(self) -> tuple[tuple[Floats, ...], Floats, float]:
        """The hidden layers' kernels, each with its bias as an extra last input row (the input carries a constant 1
        in its last column: the bias costs no pass of its own; every hidden layer but the last passes the 1 on as its
        own last column, which the ReLU keeps), the first divided by ``std``; then the output unit's kernel and bias."""
        import numpy as np

        hidden = len(self.kernels) - 1
        layers = []
        for i, (kernel, bias) in enumerate(zip(self.kernels[:-1], self.biases[:-1], strict=True)):
            scaled = kernel / self.std[:, None] if i == 0 else kernel
            layer = np.zeros((len(kernel) + 1, kernel.shape[1] + (i < hidden - 1)), np.float32)
            layer[:-1, : kernel.shape[1]], layer[-1, : kernel.shape[1]] = scaled, bias
            if i < hidden - 1:
                layer[-1, -1] = 1.0
            layers.append(layer)
        return tuple(layers), self.kernels[-1][:, 0].astype(np.float32), float(self.biases[-1][0])

    def _logits(self, features: Floats) -> Floats:
        """The logits of up to LOGIT_ROWS rows, computed on ROW_MULTIPLE-padded rows (see ROW_MULTIPLE)."""
        import numpy as np

        layers, output, output_bias = self._layers
        rows = len(features)
        # column-major, as the features come (BLAS reads it transposed); padding rows of zeros
        hidden: Floats = np.empty((features.shape[1] + 1, rows + -rows % ROW_MULTIPLE), np.float32).T
        np.subtract(features, self.mean, out=hidden[:rows, :-1])  # the mean not folded: it may be large against std
        hidden[rows:] = 0.0
        hidden[:, -1] = 1.0
        for layer in layers:
            hidden = hidden @ layer
            np.maximum(hidden, 0.0, out=hidden)
        out: Floats = (hidden @ output)[:rows]
        out += np.float32(output_bias)
        return out


# The heads' products are BLAS's, whose rounding of a row may depend on the rows around it: a matrix-vector product
# rounds its last rows (fewer than its kernel's block) differently, and numpy computes a single row's matrix product
# as a matrix-vector product. Rows padded to a multiple of ROW_MULTIPLE take the same path whatever rows come with
# them, so a row's logit has the same bits alone and in a batch (pinned by tests, pieces of 1 to 69 rows at random
# offsets; on this machine's OpenBLAS, 149 of 300 random pieces of a 65,536-row batch got other output bits unpadded,
# none padded to 4 to 64).
ROW_MULTIPLE = 16
LOGIT_ROWS = 4096


QUERY_ROWS = 4  # queries scored per matrix product (``exact_top_many``)


def exact_top(columns: Floats, query: Floats, k: int, exclude_rows: Ints | None = None) -> tuple[Ints, Floats]:
    """One query's ``exact_top_many``, without the padding."""
    import numpy as np

    excluded = None if exclude_rows is None else (np.zeros(len(exclude_rows), np.int64), exclude_rows)
    rows, scores = exact_top_many(columns, query[None], k, excluded)
    found = np.isfinite(scores[0])
    return rows[0][found], scores[0][found]


def exact_top_many(
    columns: Floats, queries: Floats, k: int, excluded: tuple[Ints, Ints] | None = None
) -> tuple[Ints, Floats]:
    """[queries, min(k, products)] each query's exact top ``k`` products by dot product with their vectors (``columns``
    [D, products], C-contiguous: a product's vector is a column), best first (ties in ``argpartition``'s order), leaving
    out the (query, row) pairs ``excluded`` (brute force), with their scores; a query left with fewer than k rows ends
    with rows scored -inf.

    The scores are matrix products of QUERY_ROWS queries at a time (the last ones padded with zero queries): always
    the same shape, so BLAS takes the same path and a query's scores have the same bits whichever queries come with it
    (pinned by tests; a product over a whole batch changes them in the last bits with the batch's size, 7 vs 256 on
    this machine's OpenBLAS). On the retail model 4 at a time cost 5.5 us a query against 18.5 for one matrix-vector
    product each, and one query padded to 4 cost 21 us."""
    import numpy as np

    rows, products = len(queries), columns.shape[1]
    padded = np.zeros((rows + -rows % QUERY_ROWS, columns.shape[0]), np.float32)
    padded[:rows] = queries
    all_scores = np.empty((len(padded), products), np.float32)
    for start in range(0, len(padded), QUERY_ROWS):
        np.matmul(padded[start : start + QUERY_ROWS], columns, out=all_scores[start : start + QUERY_ROWS])
    scores = all_scores[:rows]
    if excluded is not None:
        scores[excluded] = -np.inf
    k = min(k, products)
    top = np.argpartition(scores, -k, axis=1)[:, -k:] if k < products else np.tile(np.arange(k), (rows, 1))
    values = scores.ravel()[(top + np.arange(0, scores.size, products)[:, None]).ravel()]  # flat: no 2-D gathers
    order = descending_order(values, np.full(rows, k))  # each query's k, best first, queries in order
    return top.ravel()[order].reshape(rows, k).astype(np.int64), values[order].reshape(rows, k)


def candidates(retrieved: Ints, history: HistoryArrays, *, exclude_purchased: bool) -> Ints:
    """The rows the ranking stage scores: the retrieved rows the customer never bought, then (unless
    ``exclude_purchased``) every product of the history."""
    import numpy as np

    fresh = retrieved[~np.isin(retrieved, history.rows)]
    return fresh if exclude_purchased else np.concatenate([fresh, history.rows])


def with_histories(fresh: Ints, sizes: Ints, histories: Histories, *, exclude_purchased: bool) -> tuple[Ints, Ints]:
    """``candidates`` for many customers: customer i's never-bought rows are the next ``sizes[i]`` of ``fresh``; the
    candidate rows in customer order (each customer's fresh rows, then unless ``exclude_purchased`` their history's)
    and how many each."""
    import numpy as np

    if exclude_purchased:
        return fresh, sizes
    total = sizes + histories.sizes
    starts, customer = _starts(total), histories.customer
    out: Ints = np.empty(int(total.sum()), np.int64)
    out[np.repeat(starts - _starts(sizes), sizes) + np.arange(len(fresh))] = fresh
    out[(starts + sizes - histories.starts)[customer] + np.arange(len(histories.rows))] = histories.rows
    return out, total


def _starts(sizes: Ints) -> Ints:
    import numpy as np

    starts: Ints = np.zeros(len(sizes), np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def _segment_ids(sizes: Ints) -> Ints:
    import numpy as np

    ids: Ints = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    return ids


def _segment_sums(values: Floats, sizes: Ints) -> npt.NDArray[np.float64]:
    """Per-segment sums in float64 (0 for an empty segment)."""
    import numpy as np

    out = np.zeros(len(sizes), np.float64)
    filled = sizes > 0
    if filled.any():
        out[filled] = np.add.reduceat(values, _starts(sizes)[filled], dtype=np.float64)
    return out


def _z_scores(values: Floats, sizes: Ints, segment: Ints) -> Floats:
    """Each value z-scored within its segment (a standard deviation below 1e-6 counts as 1)."""
    import numpy as np

    count = np.maximum(sizes, 1)
    mean = (_segment_sums(values, sizes) / count)[segment]
    centred = values - mean
    std = np.sqrt(_segment_sums(centred * centred, sizes) / count)
    out: Floats = (centred / np.where(std > 1e-6, std, 1.0)[segment]).astype(np.float32)
    return out


def descending_keys(values: Floats, segment: Ints) -> Ints:
    """int64 keys that order (segment ascending, value descending) as the float32 ``values`` compare (0.0 and -0.0
    equal): sorting the keys sorts each segment's values largest first."""
    keys: Ints = (segment << 32) + _descending(values)
    return keys


def _descending(values: Floats) -> Ints:
    """[0, 2^32) int64 keys ordering the float32 ``values`` largest first (0.0 and -0.0 equal)."""
    import numpy as np

    bits = (values + np.float32(0.0)).view(np.int32).astype(np.int64)  # + 0.0: -0.0 becomes 0.0
    ordered = np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)  # the floats' order as integers
    keys: Ints = 0x7FFFFFFF - ordered
    return keys


def descending_order(values: Floats, sizes: Ints) -> Ints:
    """The order sorting each segment's ``values`` (the next ``sizes[i]``) largest first, ties in the order they
    come."""
    if len(sizes) == 1:  # one customer (a request): its keys need no segment
        return _keys_order(_descending(values), sizes)
    segment = _segment_ids(sizes)
    return _keys_order(descending_keys(values, segment), sizes, segment)


def _keys_order(keys: Ints, sizes: Ints, segment: Ints | None = None) -> Ints:
    """The stable order of ``descending_keys`` of the segments ``sizes`` (``segment``: each key's; needed for more
    than one): one sort of unique int64 keys (segment, -value, position in the segment) when they fit in 63 bits (a
    page of customers' candidates does), which is several times faster; a single segment's by one stable argsort
    (unique keys cost 21 us for 200 values against 10 us)."""
    import numpy as np

    if segment is None or len(sizes) == 1 or not len(keys):
        single: Ints = np.argsort(keys, kind="stable")
        return single
    starts = _starts(sizes)
    position_bits = int(sizes.max()).bit_length()
    if len(sizes).bit_length() + 32 + position_bits > 63:
        return np.argsort(keys, kind="stable")
    position = np.arange(len(keys)) - starts[segment]
    unique = np.sort((keys << position_bits) | position)
    order: Ints = starts[unique >> (32 + position_bits)] + (unique & ((1 << position_bits) - 1))
    return order


def _log_ranks(values: Floats, sizes: Ints, segment: Ints) -> Floats:
    """log1p of each value's 0-based rank within its segment, best (largest) first; ties share the best rank (so a
    candidate's rank does not depend on the order the candidates come in)."""
    import numpy as np

    keys = descending_keys(values, segment)
    order = _keys_order(keys, sizes, segment)
    ordered = keys[order]
    position = np.arange(len(values))
    tie_start = np.ones(len(values), bool)
    tie_start[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(tie_start, position, 0))  # the first of each run of equal values
    out: Floats = np.empty(len(values), np.float32)
    out[order] = np.log1p(first - _starts(sizes)[segment[order]]).astype(np.float32)
    return out


CUSTOMER_BLOCK = 1 << 17  # (customers x products) dense entries made at a time (a megabyte of float64: in cache)


@dataclass(frozen=True)
class CandidateHistory:
    """What the customers' histories say of each candidate: where it is in the histories' arrays (``len(rows)``, one
    past the end, for a product never bought) and its EASE score (the sum over the products the customer bought of
    their neighbour weights, float64, in the history's order)."""

    history_index: Ints
    ease: Floats

    @classmethod
    def of(cls, histories: Histories, tables: ProductTables, rows: Ints, segment: Ints) -> CandidateHistory:
        """For the candidate product ``rows`` of their customers (``segment``, ascending): a block of customers at a
        time, each as dense (customers x products) maps of their histories."""
        import numpy as np

        products = len(tables.log_popularity)
        block = max(1, CUSTOMER_BLOCK // products)
        bought_bounds = np.append(histories.starts, len(histories.rows))
        columns, values = tables.ease_columns, tables.ease_values
        history_index: Ints = np.empty(len(rows), np.int64)
        ease: Floats = np.empty(len(rows), np.float32)
        positions: Ints = np.full(min(block, len(histories)) * products, len(histories.rows), np.int64)
        for first in range(0, len(histories), block):
            last = min(first + block, len(histories))
            bought = slice(int(bought_bounds[first]), int(bought_bounds[last]))
            bought_rows = histories.rows[bought]
            bought_keys = (histories.customer[bought] - first) * products
            asked = slice(*np.searchsorted(segment, [first, last]).tolist())
            keys = (segment[asked] - first) * products + rows[asked]
            positions[bought_keys + bought_rows] = np.arange(bought.start, bought.stop)
            history_index[asked] = positions[keys]
            positions[bought_keys + bought_rows] = len(histories.rows)  # the map clean for the next block
            neighbours = (bought_keys[:, None] + columns[bought_rows]).ravel()
            totals = np.bincount(neighbours, weights=values[bought_rows].ravel(), minlength=(last - first) * products)
            ease[asked] = totals[keys]
        return cls(history_index, ease)


def features(rows: Ints, history: HistoryArrays, tables: ProductTables) -> Floats:
    """[len(rows), len(FEATURES)] ranking features of the candidate product ``rows`` for one customer."""
    import numpy as np

    return batch_features(rows, np.asarray([len(rows)]), Histories.of([history]), tables)


def batch_features(rows: Ints, sizes: Ints, histories: Histories, tables: ProductTables) -> Floats:
    """[len(rows), len(FEATURES)] ranking features of candidate product ``rows`` for many customers: customer i's
    candidates are the next ``sizes[i]`` rows (in customer order), ranked and normalised among themselves. Column-major
    (each feature's values contiguous): made column by column, and the heads read it so."""
    import numpy as np

    segment = _segment_ids(sizes)
    looked_up = CandidateHistory.of(histories, tables, rows, segment)
    history_index, ease = looked_up.history_index, looked_up.ease

    def log_per_candidate(values: Floats, missing: float = 0.0) -> Floats:
        """log1p of a history column at each candidate (of ``missing`` for one never bought): over the history only."""
        out: Floats = np.log1p(np.append(values, np.float32(missing)))[history_index]
        return out

    popularity, recent = tables.log_popularity[rows], tables.log_popularity_recent[rows]
    customer = np.log1p(
        np.stack(
            [
                histories.sizes.astype(np.float64),
                np.add.reduceat(histories.count, histories.starts).astype(np.float64),
                np.minimum.reduceat(histories.days_since, histories.starts).astype(np.float64),
            ]
        )
    ).astype(np.float32)[:, segment]
    columns = [
        history_index < len(histories.rows),  # bought
        log_per_candidate(histories.count),
        log_per_candidate(histories.quantity),
        log_per_candidate(histories.days_since, NEVER_DAYS),
        *(log_per_candidate(decayed) for decayed in histories.decayed),
        _z_scores(ease, sizes, segment),
        _log_ranks(ease, sizes, segment),
        np.clip(ease, -1.0, 2.0),
        popularity,
        recent,
        recent - popularity,
        *customer,
    ]
    out: Floats = np.empty((len(columns), len(rows)), np.float32)
    for i, column in enumerate(columns):
        out[i] = column
    return out.T


def sigmoid(logits: Floats) -> Floats:
    import numpy as np

    out: Floats = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return out
