"""The eBPF datapath: the ARP responder program, its maps, attach/adopt, gratuitous ARP."""
