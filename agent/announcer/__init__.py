"""The l2-announcer: which Services this node campaigns for, and the entries its leases earn."""
