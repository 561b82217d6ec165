"""The node agent (l2agent): devices, Kubernetes reflectors, policy evaluation, elections."""
