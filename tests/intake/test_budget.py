"""The in-flight byte budget, in all and per client, without HTTP."""

from __future__ import annotations

from pipeline.intake.budget import ByteBudget, client_key


def test_a_client_holds_at_most_its_share_and_others_keep_the_rest() -> None:
    budget = ByteBudget.shared(1000, 0.25, 100)
    assert budget.client_limit == 250
    assert budget.try_acquire("a", 200)
    assert not budget.try_acquire("a", 51)  # over a's share
    assert budget.try_acquire("a", 50)
    assert budget.try_acquire("b", 250) and budget.try_acquire("c", 250)
    assert budget.fits("d", 250) and not budget.fits("d", 251)  # the total is the other bound
    assert budget.try_acquire("d", 250)
    assert not budget.try_acquire("e", 1)
    budget.release("a", 250)
    assert budget.try_acquire("e", 1)
    assert budget.used == 751 and "a" not in budget.by_client  # an idle client leaves no entry


def test_a_client_may_always_hold_one_largest_request() -> None:
    budget = ByteBudget.shared(4096, 0.25, 4096)
    assert budget.client_limit == 4096
    assert ByteBudget.shared(1000, 1.0, 10).client_limit == 1000


def test_client_keys_group_an_ipv6_slash_64() -> None:
    assert client_key("81.2.69.142") == "81.2.69.142"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) == "?"
