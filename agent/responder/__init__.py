"""The l2-responder: reconciles the l2-announce table into the BPF responder map."""
