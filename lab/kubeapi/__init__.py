"""An in-memory, Kubernetes-API-compatible server for tests and the lab."""
