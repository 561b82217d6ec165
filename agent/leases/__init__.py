"""Per-Service Lease election: our own elector with client-go semantics, plus lease watches
instead of polling, a timeout on every request and an immediate takeover of a released lease
(the Python client's ``kubernetes.leaderelection`` has no timeouts, no release and a wall clock).

- record.py: the Lease fields the election uses, MicroTime formatting, and the mapping to and
  from the watched ``leases`` table's row (lease names are common/leases.py's).
- state.py: the election of ONE lease as a pure state machine (inputs: what we want, what we
  observe, results of our requests, time; outputs: requests to send and leadership changes).
- elector.py: the driver: one scheduler thread for all leases and a small pool for API calls,
  so a hanging request can never keep a leader past its renew deadline.
- api.py: the LeaseAPI protocol the driver calls, its errors, and ``SendTime``, in which a call
  says when its request left the client-side rate limiter.
"""
