"""Talking to the Kubernetes API: the client (rate limit, timeouts), reflectors, lease access."""
