"""The official ``kubernetes`` client, configured the way the agent needs it.

Every request goes through one rate limiter and carries a timeout: the client's default is to
wait forever, which is how a stalled API connection keeps a leader answering (decision 7).
Watches pass their own (connect, read) timeout, longer than the server-side timeoutSeconds.

How many requests may be in flight at once follows the rate limit: at ``qps`` requests a second,
each taking up to ``ROUND_TRIP`` on a busy apiserver (a write returns once etcd has committed
it), ``qps x ROUND_TRIP`` of them overlap; fewer lease workers than that and renewals queue past
their renew deadline. The connection pool holds one connection per worker, per watch and per
status writer, so none is closed and opened again (a TLS handshake) under load.
"""

from __future__ import annotations

import math
import threading
import time
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


_local = threading.local()


def request_sent_at() -> float | None:
    """When the calling thread's latest request left the rate limiter (``time.monotonic()``).

    A request can wait in the limiter for many seconds when the client is throttled; the elector
    counts a renew from this moment, not from when it asked for the request (see
    ``LeaseElection.complete``)."""
    at: float | None = getattr(_local, "sent_at", None)
    return at


class RequestObserver(Protocol):
    def on_request(self, verb: str, code: str) -> None: ...
    def on_throttle(self, seconds: float) -> None: ...


def install_limits(
    api: Any,
    limiter: RateLimiter,
    default_timeout: float = DEFAULT_TIMEOUT,
    observer: RequestObserver | None = None,
) -> None:
    """Wrap ``api.rest_client.request`` (the one path of every call, watches included)."""
    inner = api.rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = default_timeout
        waited = limiter.wait(method, url)
        _local.sent_at = time.monotonic()
        if observer is None:
            return inner(method, url, *args, **kwargs)
        if waited > 0:
            observer.on_throttle(waited)
        try:
            resp = inner(method, url, *args, **kwargs)
        except Exception as e:
            observer.on_request(method, str(getattr(e, "status", None) or "error"))
            raise
        observer.on_request(method, str(getattr(resp, "status", "") or "error"))
        return resp

    api.rest_client.request = request


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
    configuration.connection_pool_maxsize = lease_workers(qps) + OTHER_CONNECTIONS
    api = kubernetes.client.ApiClient(configuration)
    install_limits(api, RateLimiter(qps, burst), observer=observer)
    return api
