"""The purchase history's arithmetic (recsys.domain): counts, quantities, last times, exactly decayed counts, the
bound on distinct products; and its JSON form in the store."""

from __future__ import annotations

import json
import math

from recsys.domain import DAY_SECONDS, HALF_LIVES_DAYS, ProductHistory, Purchase, PurchaseHistory
from recsys.store import product_rows

T0 = 1_700_000_000  # epoch seconds


def purchase(product_id: str, at: int, quantity: int = 1) -> Purchase:
    return Purchase(product_id, quantity, at)


def decayed_by_hand(times: list[int], ref: int, half_life_days: int) -> float:
    """The definition: each purchase weighs 2^(-(ref - t) / half-life) at ``ref``."""
    return sum(2 ** (-(ref - t) / (half_life_days * DAY_SECONDS)) for t in times)


def test_a_first_purchase_counts_once_at_full_weight() -> None:
    history = PurchaseHistory("c1").add([purchase("A", T0, quantity=3)], limit=10, country="France")
    assert history.products["A"] == ProductHistory(1, 3, T0, T0, 1.0, 1.0)
    assert history.country == "France"


def test_decayed_counts_are_exact_in_order_and_out_of_order() -> None:
    # Given purchases of one product 10 and 45 days apart, recorded late ones first and an old one last
    times = [T0 + 10 * DAY_SECONDS, T0, T0 + 55 * DAY_SECONDS, T0 - 30 * DAY_SECONDS]
    history = PurchaseHistory("c1")
    for t in times:  # When each is recorded as its own order
        history = history.add([purchase("A", t)], limit=10)
    # Then the counts are what the definition gives at the latest purchase, whatever the order of arrival
    product = history.products["A"]
    assert product.ref == product.last_purchased == max(times)
    assert product.purchases == 4
    for decayed, half_life in zip(product.decayed, HALF_LIVES_DAYS, strict=True):
        assert math.isclose(decayed, decayed_by_hand(times, max(times), half_life), rel_tol=1e-12)
    # And a purchase 30 days before the reference weighs a half at a 30-day half-life
    single = PurchaseHistory("c2").add([purchase("B", T0)], 10).add([purchase("B", T0 - 30 * DAY_SECONDS)], 10)
    assert math.isclose(single.products["B"].decayed[0], 1.5)


def test_a_product_repeated_in_one_order_counts_each_purchase() -> None:
    history = PurchaseHistory("c1").add([purchase("A", T0, 2), purchase("A", T0, 5), purchase("B", T0)], limit=10)
    assert history.products["A"].purchases == 2
    assert history.products["A"].quantity == 7
    assert history.products["A"].decayed == (2.0, 2.0)
    assert history.products["B"].purchases == 1


def test_the_history_keeps_the_most_recently_bought_products() -> None:
    # Given a history at its bound of 3 products
    history = PurchaseHistory("c1").add([purchase(p, T0 + i) for i, p in enumerate("ABC")], limit=3)
    # When an older product is bought again and a new one is bought
    history = history.add([purchase("A", T0 + 10), purchase("D", T0 + 5)], limit=3)
    # Then the least recently bought one (B) is dropped
    assert set(history.products) == {"A", "C", "D"}
    # And an order of old purchases of new products does not push out what was bought later
    history = history.add([purchase("OLD", T0 - 100)], limit=3)
    assert set(history.products) == {"A", "C", "D"}


def test_a_later_country_replaces_the_earlier_one_and_none_keeps_it() -> None:
    history = PurchaseHistory("c1").add([purchase("A", T0)], 10, "France").add([purchase("A", T0)], 10)
    assert history.country == "France"
    assert history.add([purchase("A", T0)], 10, "Spain").country == "Spain"


def test_the_stored_form_holds_each_figure_in_a_fixed_order() -> None:
    history = PurchaseHistory("c1").add([purchase("A", T0, 2)], limit=10).add([purchase("A", T0 - DAY_SECONDS)], 10)
    # purchases, quantity, last purchase, ref, then the decayed counts in HALF_LIVES_DAYS' order
    assert HALF_LIVES_DAYS == (30, 90)
    assert json.loads(json.dumps(product_rows(history.products))) == {
        "A": [2, 3, T0, T0, 1.0 + 2 ** (-1 / 30), 1.0 + 2 ** (-1 / 90)]
    }
