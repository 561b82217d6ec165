"""Bearer-token authentication: which user (or ServiceAccount) sent a request.

The apiserver identifies every caller by the token in ``Authorization: Bearer <token>``. Agents
run as ServiceAccounts, whose user name is ``system:serviceaccount:<namespace>:<name>`` and whose
groups are ``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and
``system:authenticated``; RBAC bindings name them through those strings. The admin (``kubectl`` in
the lab, the test harness) is in ``system:masters``, which RBAC never denies.

Tokens are opaque random strings kept in memory (the real ones are JWTs; nothing here reads
them). A token also identifies the client to the fault injector: one token per simulated node lets
a test partition node2 while node1 keeps working. Unknown or missing tokens authenticate as nobody
(None), which the server answers with 401 "Unauthorized", as the real apiserver with anonymous
auth disabled.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lab.kubeapi.pipeline import UserInfo

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def service_account_username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def parse_service_account_username(username: str) -> tuple[str, str] | None:
    """(namespace, name) for a ServiceAccount user name, None for any other user."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, sep, name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    if not sep or not namespace or not name or ":" in name:
        return None
    return namespace, name


def service_account_user(namespace: str, name: str, uid: str = "", node: str = "") -> UserInfo:
    return UserInfo(
        name=service_account_username(namespace, name),
        groups=(SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", AUTHENTICATED),
        uid=uid or str(uuid.uuid4()),
        node=node,
    )


def plain_user(name: str, groups: Iterable[str] = ()) -> UserInfo:
    """A user as a static-token authenticator gives it: its groups plus system:authenticated."""
    all_groups = [g for g in groups if g != AUTHENTICATED]
    all_groups.append(AUTHENTICATED)
    return UserInfo(name=name, groups=tuple(all_groups))


def admin_user(name: str = "admin") -> UserInfo:
    return plain_user(name, (MASTERS,))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, as the apiserver parses it.

    The scheme is case-insensitive (the Python client's in-cluster loader sends ``bearer``);
    header names are matched case-insensitively whatever mapping the server passes.
    """
    value = headers.get("Authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    parts = value.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    token = parts[1]
    return token or None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    user: UserInfo


class TokenAuthenticator:
    """Maps bearer tokens to users; implements pipeline.Authenticator. Thread-safe.

    Tokens can be added and revoked while the server runs; the next request sees the change.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, UserInfo] = {}

    # -- issuing --------------------------------------------------------------------------------

    def add_token(self, user: UserInfo, token: str | None = None) -> str:
        """Register `token` (a fresh random one when None) for `user`; returns the token."""
        token = token or secrets.token_urlsafe(32)
        if any(c.isspace() for c in token):
            raise ValueError("a bearer token cannot contain whitespace")
        with self._lock:
            self._users[token] = user
        return token

    def add_admin(self, name: str = "admin", token: str | None = None) -> str:
        return self.add_token(admin_user(name), token)

    def add_user(self, name: str, groups: Iterable[str] = (), token: str | None = None) -> str:
        return self.add_token(plain_user(name, groups), token)

    def add_service_account(
        self, namespace: str, name: str, token: str | None = None, node: str = ""
    ) -> str:
        """A token for ServiceAccount namespace/name, bound to ``node`` if given (as a pod's
        projected token is). Its uid is shared by all its tokens."""
        username = service_account_username(namespace, name)
        with self._lock:
            uid = next((u.uid for u in self._users.values() if u.name == username), "")
        return self.add_token(service_account_user(namespace, name, uid, node), token)

    # -- revoking and inspecting ----------------------------------------------------------------

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._users.pop(token, None) is not None

    def revoke_user(self, username: str) -> int:
        """Revoke every token of `username` (token rotation tests); returns how many."""
        with self._lock:
            doomed = [t for t, u in self._users.items() if u.name == username]
            for token in doomed:
                del self._users[token]
        return len(doomed)

    def user_for_token(self, token: str) -> UserInfo | None:
        with self._lock:
            return self._users.get(token)

    def tokens_for(self, username: str) -> list[str]:
        with self._lock:
            return [t for t, u in self._users.items() if u.name == username]

    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return [IssuedToken(t, u) for t, u in self._users.items()]

    # -- pipeline.Authenticator -----------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        token = bearer_token(headers)
        if token is None:
            return None
        return self.user_for_token(token)
