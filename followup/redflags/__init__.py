"""Red-flag detection in patients' replies, driven by the clinic's criteria file.

from followup.redflags import Detector, ReplyContext
det = Detector.from_file(Path("clinic/red_flags.toml"))
verdict = det.assess("my hand feels weaker", ReplyContext(weeks_since_onset=5))
verdict.level  # "emergency" | "red_flag" | "none"
"""

from followup.redflags.detector import Detector
from followup.redflags.rulebook import CriteriaError
from followup.redflags.verdict import Criterion, Finding, Question, ReplyContext, Suppressed, Verdict

__all__ = ["CriteriaError", "Criterion", "Detector", "Finding", "Question", "ReplyContext", "Suppressed", "Verdict"]
