"""VIP conflict detection: another host answering ARP for a VIP this node announces.

rules.py    the pure rules (evidence, probes, claim grace, defence, quiet time)
wire.py     one ARP-only packet socket per announcing interface; probe and defence frames
monitor.py  the module: follows the tables, runs the rules on the wire, writes ``conflicts``
report.py   the Service's Warning Event and ``l2announcer.io/Conflict`` condition
"""

from agent.conflicts.monitor import ConflictMonitor
from agent.conflicts.report import ConflictReports
from agent.conflicts.rules import Settings

__all__ = ["ConflictMonitor", "ConflictReports", "Settings"]
