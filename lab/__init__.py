"""The embedded lab: a real Kubernetes control plane built from pinned Go modules
(controlplane.py, pki.py, go/) and ``l2lab`` (cli.py, commands.py, lab.py; docs/lab.md), which
runs it with real agents in network namespaces."""
