"""The time-travel simulator: a synthetic cohort through the real enrollment, dispatcher, reply handling and
escalation, on a virtual clock, against an in-process provider (`followup simulate`).

cohort.py    synthetic patients and labelled reply phrasings, each a function of (seed, index)
provider.py  the in-process provider: transports, callbacks and events, replies, the send-time oracle
staff.py     the clinic's staff: acknowledge and close escalations
run.py       the loop that moves the clock and calls the real services (and every job the scheduler registers)
report.py    the summary and the four invariants that must be zero
"""

from followup.simulator.config import DEFAULT_START, SimConfig
from followup.simulator.provider import Rates
from followup.simulator.report import INVARIANTS
from followup.simulator.run import simulate

__all__ = ["DEFAULT_START", "INVARIANTS", "Rates", "SimConfig", "simulate"]
