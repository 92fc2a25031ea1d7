"""The time-travel simulator: a synthetic cohort through the real enrollment, dispatcher, reply handling and
escalation, on a virtual clock, against an in-process provider (`followup simulate`).

cohort.py    synthetic patients and labelled reply phrasings, each a function of (seed, index)
provider.py  the in-process provider: transports, callbacks and events, replies, the send-time oracle
run.py       the loop that moves the clock and calls the real services
report.py    the summary and the four invariants that must be zero
"""

from followup.simulator.provider import Rates
from followup.simulator.report import INVARIANTS
from followup.simulator.run import DEFAULT_START, SimConfig, simulate

__all__ = ["DEFAULT_START", "INVARIANTS", "Rates", "SimConfig", "simulate"]
