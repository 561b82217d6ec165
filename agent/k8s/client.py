"""The official ``kubernetes`` client, configured the way the agent needs it.

Every request waits on one shared rate limiter and carries a timeout: the client's default is to
wait forever, and a leader whose renewal hangs on a stalled connection would keep answering ARP
for a Service whose lease it can no longer renew. Watches pass their own (connect, read) timeout,
longer than the server-side timeoutSeconds.

Each ``ApiClient`` of the agent gets a ``LimitedRESTClient`` as its ``rest_client``: the one
path of all its requests, watches included. Lease requests have an ``ApiClient`` of their own
(``lease_api_client``) whose transport does not wait: the lease API waits on the same limiter
itself, right before its request, so it knows when the request left (``SendTime``) without
anything hidden between the two.

How many requests may be in flight at once follows the rate limit: at ``qps`` requests a second,
each taking up to ``ROUND_TRIP`` on a busy apiserver (a write returns once etcd has committed
it), ``qps x ROUND_TRIP`` of them overlap; fewer lease workers than that and renewals queue past
their renew deadline. The lease client's pool holds one connection per worker, the other client's
one per watch and status writer, so none is closed and opened again (a TLS handshake) under load.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Protocol

import kubernetes

from agent.k8s.ratelimit import RateLimiter

DEFAULT_TIMEOUT = 10.0  # seconds, for any request that names none
# Seconds a request takes on a busy apiserver, for sizing the workers: more workers than the
# rate needs only crowd the apiserver, and a crowded one answers renewals past their timeout.
ROUND_TRIP = 0.05
MIN_WORKERS, MAX_WORKERS = 8, 128
OTHER_CONNECTIONS = 16  # the reflectors' watches, the status writers, lease GC


def lease_workers(qps: float) -> int:
    """Lease requests the elector keeps in flight at once for a client limited to ``qps``."""
    return max(MIN_WORKERS, min(MAX_WORKERS, math.ceil(qps * ROUND_TRIP)))


class RequestObserver(Protocol):
    def on_request(self, verb: str, code: str) -> None: ...
    def on_throttle(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What all the agent's requests share: one rate limiter (the ``k8s-client-qps`` budget;
    None: unlimited), the timeout of a request that names none, and the metrics observer."""

    limiter: RateLimiter | None
    observer: RequestObserver | None = None
    default_timeout: float = DEFAULT_TIMEOUT

    def wait(self, verb: str, url: str) -> None:
        """Block until the shared rate limiter lets a request go; the observer counts a wait."""
        if self.limiter is None:
            return
        waited = self.limiter.wait(verb, url)
        if waited > 0 and self.observer is not None:
            self.observer.on_throttle(waited)


class LimitedRESTClient:
    """An ``ApiClient``'s ``rest_client``: gives a request without a timeout the default one,
    waits on the shared rate limiter (unless ``waits`` is False: the caller has waited on it
    itself) and reports every answer to the observer, then hands the request to ``transport``
    (the client's own ``RESTClientObject``)."""

    def __init__(self, transport: Any, limits: ClientLimits, *, waits: bool = True) -> None:
        self.transport = transport
        self.limits = limits
        self.waits = waits

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.limits.default_timeout
        if self.waits:
            self.limits.wait(method, url)
        observer = self.limits.observer
        if observer is None:
            return self.transport.request(method, url, *args, **kwargs)
        try:
            resp = self.transport.request(method, url, *args, **kwargs)
        except Exception as e:
            observer.on_request(method, str(getattr(e, "status", None) or "error"))
            raise
        observer.on_request(method, str(getattr(resp, "status", "") or "error"))
        return resp

    def close(self) -> None:
        self.transport.close()


def install_limits(
    api: Any,
    limiter: RateLimiter | None,
    default_timeout: float = DEFAULT_TIMEOUT,
    observer: RequestObserver | None = None,
) -> None:
    """Send every request of ``api`` through a LimitedRESTClient with these limits."""
    limits = ClientLimits(limiter, observer, default_timeout)
    api.rest_client = LimitedRESTClient(api.rest_client, limits)


def limits_of(api: Any) -> ClientLimits:
    """The limits ``api`` was given by install_limits (none for a plain ApiClient)."""
    rest = api.rest_client
    return rest.limits if isinstance(rest, LimitedRESTClient) else ClientLimits(None)


def lease_api_client(api: Any) -> tuple[Any, ClientLimits]:
    """An ApiClient for lease requests beside ``api``, and the limits they share with it.

    Same server, credentials, limiter, default timeout and observer; a connection pool of its
    own, one connection per lease worker; and a transport that does not wait on the limiter,
    because the lease API waits on it explicitly to learn when each request left."""
    limits = limits_of(api)
    configuration = copy.copy(api.configuration)
    if limits.limiter is not None:
        configuration.connection_pool_maxsize = lease_workers(limits.limiter.qps)
    leases: Any = kubernetes.client.ApiClient(configuration)  # its rest_client is replaced
    leases.rest_client = LimitedRESTClient(leases.rest_client, limits, waits=False)
    return leases, limits


def make_api_client(
    kubeconfig: str, qps: float, burst: int, observer: RequestObserver | None = None
) -> Any:
    """An ApiClient from ``kubeconfig``, or the in-cluster service account if it is empty."""
    configuration = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    else:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    # No urllib3 retries: every caller has its own retry and backoff (elector, reflectors), and a
    # lease PUT silently re-sent after a read timeout is not what the elector decided to send.
    configuration.retries = False
    configuration.connection_pool_maxsize = OTHER_CONNECTIONS  # leases: lease_api_client
    api: Any = kubernetes.client.ApiClient(configuration)
    install_limits(api, RateLimiter(qps, burst), observer=observer)
    return api
