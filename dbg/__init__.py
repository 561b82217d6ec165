"""l2dbg: the debug CLI that reads the state database and BPF maps without the agent."""
