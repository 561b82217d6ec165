"""The embedded lab: a Kubernetes-API-compatible test server (kubeapi/) and ``l2lab`` (cli.py,
commands.py, lab.py; docs/lab.md), which runs it with real agents in network namespaces."""
