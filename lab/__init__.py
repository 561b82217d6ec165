"""The embedded lab: a Kubernetes-API-compatible test server (kubeapi/) and, later, l2lab."""
