"""Red-flag detection in patients' replies, driven by the clinic's criteria file.

from followup.redflags import Detector, ReplyContext
det = Detector.from_file(Path("clinic/red_flags.toml"))
verdict = det.assess("my hand feels weaker", ReplyContext(weeks_since_onset=5))
verdict.level  # "emergency" | "red_flag" | "none"

`Detector` is the rule layer alone; `Screen` adds the learned layer and the language check (what the service
and `followup check` use): `Screen.from_file(path).assess(text, context)`.
"""

from followup.redflags.detector import Detector
from followup.redflags.learned.artefact import ArtefactError
from followup.redflags.rulebook import CriteriaError
from followup.redflags.screen import Screen
from followup.redflags.verdict import Criterion, Finding, Question, ReplyContext, Suppressed, Verdict

__all__ = [
    "ArtefactError",
    "CriteriaError",
    "Criterion",
    "Detector",
    "Finding",
    "Question",
    "ReplyContext",
    "Screen",
    "Suppressed",
    "Verdict",
]
