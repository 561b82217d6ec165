"""What the agent, l2dbg and the lab all need and none of them owns: the state database's
application tables (``common.tables``), Go-style durations, Kubernetes name and label
validation, and lease names. It imports only ``statedb`` and the standard library, so l2dbg can
read the agent's tables without importing the agent."""
