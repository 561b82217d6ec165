"""The official ``kubernetes`` client, configured the way the agent needs it.

Every request goes through one rate limiter and carries a timeout: the client's default is to
wait forever, which is how a stalled API connection keeps a leader answering (decision 7).
Watches pass their own (connect, read) timeout, longer than the server-side timeoutSeconds.
"""

from __future__ import annotations

from typing import Any

import kubernetes

from agent.k8s.ratelimit import RateLimiter

DEFAULT_TIMEOUT = 10.0  # seconds, for any request that names none


def install_limits(
    api: Any, limiter: RateLimiter, default_timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Wrap ``api.rest_client.request`` (the one path of every call, watches included)."""
    inner = api.rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = default_timeout
        limiter.wait(method, url)
        return inner(method, url, *args, **kwargs)

    api.rest_client.request = request


def make_api_client(kubeconfig: str, qps: float, burst: int) -> Any:
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
    api = kubernetes.client.ApiClient(configuration)
    install_limits(api, RateLimiter(qps, burst))
    return api
