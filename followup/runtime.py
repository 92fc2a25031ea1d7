"""Everything a running service holds, built once from the settings and passed in (no globals)."""

from __future__ import annotations

import secrets
import threading
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from followup.clock import Clock, SystemClock
from followup.content.links import Links
from followup.content.pages import check_pages
from followup.content.templates import Templates, check_all
from followup.core.intake_rules import IntakeRules, load_intake_rules
from followup.core.keywords import Keywords, load_keywords
from followup.core.program import Program, load_program
from followup.core.throttle import Slots
from followup.core.triage import answer_fields
from followup.core.vocab import CHANNELS
from followup.db import Database
from followup.settings import Settings
from followup.transports.base import Transport
from followup.transports.factory import build_caller, build_transports
from followup.transports.twilio_voice import Caller
from followup.transports.webhook_http import HttpxPoster, WebhookPoster

if TYPE_CHECKING:
    from followup.redflags import Screen


DEV_KEY_FILE = Path("var/secret_key")


def secret_key(settings: Settings) -> str:
    """The configured key; in development, a random one kept in var/ so links survive a restart."""
    if settings.security.secret_key:
        return settings.security.secret_key
    if settings.security.environment == "production":  # settings validation already refuses this
        raise RuntimeError("security.secret_key is required in production")
    try:
        return DEV_KEY_FILE.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        DEV_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        DEV_KEY_FILE.write_text(key)
        DEV_KEY_FILE.chmod(0o600)
        return key


class StartupError(Exception):
    """The service cannot start: content or configuration is wrong. The message says where."""


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    templates: Templates
    program: Program
    intake: IntakeRules
    transports: dict[str, Transport]
    links: Links
    password_slots: Slots  # argon2 work at once in this process (security.password_hash_slots)
    webhook_poster: WebhookPoster = field(default_factory=HttpxPoster)  # signed outbound webhooks
    caller: Caller | None = None  # phone calls for unacknowledged emergencies (None: no calls)
    wake_dispatcher: list = field(default_factory=list)  # callables run after a commit that queued urgent sends
    wake_ingest: list = field(default_factory=list)  # callables run after a commit that stored a reply to act on
    _detector_lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def detector(self) -> Screen:
        with self._detector_lock:
            return load_detector(self.settings.clinic.red_flags)

    @cached_property
    def keywords(self) -> Keywords:
        return load_keywords(self.settings.clinic.keywords)

    def wake(self) -> None:
        for fn in self.wake_dispatcher:
            fn()

    def wake_ingest_workers(self) -> bool:
        """Wake this process's reply workers; False when it runs none (the reply waits for another process's)."""
        for fn in self.wake_ingest:
            fn()
        return bool(self.wake_ingest)


_DETECTORS: dict[tuple[str, float], Screen] = {}
_DETECTORS_LOCK = threading.Lock()


def load_detector(path: Path) -> Screen:
    """The detector (rules and learned layer) for a criteria file, built once per process (medspaCy and the
    sentence encoder take a few seconds to load); a model artefact whose sha256 is not the pinned one stops it."""
    from followup.redflags import Screen

    key = (str(path.resolve()), path.stat().st_mtime)
    with _DETECTORS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = Screen.from_file(path)
        return _DETECTORS[key]


def _check_model_pin(path: Path, learned: object) -> None:
    """The learned layer's artefact is the pinned one (a 4 MB hash, cheap): the service does not start with a
    stale or altered model. Loading it (seconds) waits for the first reply, or the app's warm-up."""
    from followup.redflags.learned.artefact import ArtefactError, sha256_of
    from followup.redflags.learned.config import parse_learned

    settings = parse_learned(learned, path)
    if settings is None or not settings.enabled:
        return
    try:
        actual = sha256_of(settings.artefact)
    except OSError as exc:
        raise ArtefactError(f"{settings.artefact}: cannot read the model artefact ({exc.strerror})") from exc
    if actual != settings.sha256:
        raise ArtefactError(
            f"{settings.artefact}: sha256 {actual} is not the {settings.sha256} pinned in {path} [learned]: "
            "retrain with `followup redflags train`, or restore the committed artefact"
        )


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transports: dict[str, Transport] | None = None,
    db: Database | None = None,
    webhook_poster: WebhookPoster | None = None,
    caller: Caller | None = None,
) -> Runtime:
    """Load and check all content (program, templates, intake rules); refuse to start on any problem."""
    templates = Templates(settings.clinic.templates)
    try:
        announce = load_keywords(settings.clinic.keywords).announce
    except Exception as exc:
        raise StartupError(str(exc)) from exc
    rows = check_all(templates, announce=announce)
    problems = [f"{r.language}/{r.name}.{r.channel}: {r.problem}" for r in rows if r.problem]
    problems += check_pages(settings.clinic.templates, list(settings.clinic.languages))
    try:
        program = load_program(settings.clinic.program, answer_fields())
    except Exception as exc:
        raise StartupError(str(exc)) from exc
    for step in program.steps:
        for channel in CHANNELS:
            try:
                templates.path(step.template, channel, "en")
            except Exception as exc:
                problems.append(f"step {step.id}: {exc}")
    if problems:
        raise StartupError("templates refused:\n  " + "\n  ".join(problems))
    try:
        intake = load_intake_rules(settings.clinic.intake_rules)
        red_flags = tomllib.loads(settings.clinic.red_flags.read_text(encoding="utf-8"))
        known = set(red_flags.get("criteria", {}))
        _check_model_pin(settings.clinic.red_flags, red_flags.get("learned"))
    except Exception as exc:
        raise StartupError(str(exc)) from exc
    unknown = sorted(({f.criterion for f in intake.flags} | {intake.persisting_criterion}) - known)
    if unknown:
        raise StartupError(
            f"{settings.clinic.intake_rules}: criteria not in {settings.clinic.red_flags}: " + ", ".join(unknown)
        )
    return Runtime(
        settings=settings,
        db=db or Database(settings.database.url),
        clock=clock or SystemClock(),
        templates=templates,
        program=program,
        intake=intake,
        transports=transports or build_transports(settings),
        links=Links(settings, secret_key(settings)),
        password_slots=Slots(settings.security.password_hash_slots),
        webhook_poster=webhook_poster or HttpxPoster(settings.webhooks.timeout_seconds),
        caller=caller if caller is not None else build_caller(settings),
    )
