"""Bearer tokens to users and ServiceAccounts, parsed as the apiserver parses them."""

from __future__ import annotations

import pytest

from lab.kubeapi.auth import (
    TokenAuthenticator,
    bearer_token,
    parse_service_account_username,
    service_account_username,
)


def test_service_account_token_maps_to_its_user_and_groups() -> None:
    auth = TokenAuthenticator()
    token = auth.add_service_account("kube-system", "node2")
    user = auth.authenticate({"Authorization": f"Bearer {token}"})
    assert user is not None
    assert user.name == "system:serviceaccount:kube-system:node2"
    assert user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
        "system:authenticated",
    )


def test_tokens_of_one_service_account_share_its_uid() -> None:
    auth = TokenAuthenticator()
    a = auth.user_for_token(auth.add_service_account("kube-system", "cilium"))
    b = auth.user_for_token(auth.add_service_account("kube-system", "cilium"))
    c = auth.user_for_token(auth.add_service_account("default", "cilium"))
    assert a is not None and b is not None and c is not None
    assert a.uid and a.uid == b.uid != c.uid


def test_admin_is_in_system_masters() -> None:
    auth = TokenAuthenticator()
    user = auth.authenticate({"authorization": "Bearer " + auth.add_admin(token="secret")})
    assert user is not None
    assert user.name == "admin"
    assert user.groups == ("system:masters", "system:authenticated")


def test_plain_user_gets_system_authenticated_once() -> None:
    auth = TokenAuthenticator()
    user = auth.user_for_token(auth.add_user("bob", ["ops", "system:authenticated"]))
    assert user is not None and user.groups == ("ops", "system:authenticated")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer  t1"},  # two spaces: empty token, as Go's SplitN sees it
        {"Authorization": "Basic dTpw"},
        {"Authorization": "Bearer unknown"},
    ],
)
def test_missing_or_invalid_token_authenticates_nobody(headers: dict[str, str]) -> None:
    auth = TokenAuthenticator()
    auth.add_admin(token="t1")
    assert auth.authenticate(headers) is None


def test_scheme_is_case_insensitive_like_the_incluster_loader_sends_it() -> None:
    auth = TokenAuthenticator()
    auth.add_admin(token="t1")
    assert auth.authenticate({"Authorization": "bearer t1"}) is not None
    assert auth.authenticate({"AUTHORIZATION": "BEARER t1"}) is not None
    assert bearer_token({"Authorization": "  Bearer t1 extra"}) == "t1"


def test_revoked_token_is_rejected_on_the_next_request() -> None:
    auth = TokenAuthenticator()
    t1 = auth.add_service_account("kube-system", "node1")
    t2 = auth.add_service_account("kube-system", "node1")
    assert auth.revoke(t1)
    assert not auth.revoke(t1)
    assert auth.authenticate({"Authorization": f"Bearer {t1}"}) is None
    assert auth.authenticate({"Authorization": f"Bearer {t2}"}) is not None
    assert auth.revoke_user("system:serviceaccount:kube-system:node1") == 1
    assert auth.tokens_for("system:serviceaccount:kube-system:node1") == []


def test_generated_tokens_are_distinct_and_explicit_ones_kept() -> None:
    auth = TokenAuthenticator()
    tokens = {auth.add_service_account("ns", f"n{i}") for i in range(50)}
    assert len(tokens) == 50
    assert auth.add_user("u", token="fixed") == "fixed"
    with pytest.raises(ValueError):
        auth.add_user("u", token="has space")


def test_service_account_username_round_trip() -> None:
    name = service_account_username("kube-system", "cilium")
    assert name == "system:serviceaccount:kube-system:cilium"
    assert parse_service_account_username(name) == ("kube-system", "cilium")
    assert parse_service_account_username("admin") is None
    assert parse_service_account_username("system:serviceaccount:only-ns") is None


def test_a_node_bound_service_account_token_names_its_node() -> None:
    from lab.kubeapi.auth import TokenAuthenticator

    authn = TokenAuthenticator()
    token = authn.add_service_account("kube-system", "l2announcer", node="node2")
    user = authn.authenticate({"Authorization": f"Bearer {token}"})
    assert user is not None
    assert (user.name, user.node) == ("system:serviceaccount:kube-system:l2announcer", "node2")
