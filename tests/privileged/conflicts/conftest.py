"""The datapath tests' fixtures (a node and a client namespace, a BPF root of the test's own, the
loader), for the detector beside the real responder."""

from tests.privileged.datapath.conftest import bpf_root, lab, loaders

__all__ = ["bpf_root", "lab", "loaders"]
