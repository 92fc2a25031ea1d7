"""How the rule layer and the learned layer make one verdict. Pure: values in, a verdict out.

- Rules that fire stand: their level, tier and criteria; the learned layer adds (layer "both" when it agrees, and
  its reading is kept beside the rules' for the clinician). One exception, for safety: a rules' red flag in a
  reply the learned layer is sure is an emergency (p(any) and p(emergency) both >= flag_at) becomes an emergency,
  with the learned criterion added: a "persisting" read in a self-harm message must not hide the self-harm.
- No rule fired, and the reply is in a language the clinic does not read: staff review (never "none").
- No rule fired: p(any red flag) >= flag_at escalates ("learned"), an emergency when p(emergency criteria) >=
  emergency_at (from review_at up: a likely emergency is not left to a review queue), or, for a finding at or
  above flag_at, when the most likely criterion is an emergency one and p(emergency) >= nearest_emergency_at
  (the finding takes the tier of the criterion it is nearest to); review_at <= p < flag_at is otherwise a staff
  review item, level red_flag, `review` true, tier routine, or urgent when it leans that way (most likely
  criterion an emergency one, p(emergency) >= nearest_emergency_at); with `review_needs_flagged_neighbour`, a
  review that does not lean to an emergency needs one red flag among its closest labelled examples, and is
  cleared (level none, `cleared_by_neighbours`, explained) when they all needed nothing; with
  `leaning_review_needs_neighbour`, so does one that leans to an emergency (it is still urgent when not cleared).
- Replies shorter than `min_words` ("STOP", "2", "yes") are the rules' and the keywords' alone; criteria in
  `rules_only` (persisting twitching: it needs the weeks since onset) are never the learned layer's to flag.
- The learned layer never reads a clause in which the rules found a mention and discounted it (negated, someone
  else, hypothetical, ...): `Screen` leaves those clauses out before asking it, so a clear negation holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from followup.core.vocab import Level, Tier
from followup.redflags.learned.config import LearnedSettings
from followup.redflags.learned.language import LanguageRead
from followup.redflags.learned.model import NONE, Prediction
from followup.redflags.verdict import LearnedReading, Verdict


def reading(prediction: Prediction, settings: LearnedSettings, criterion: str | None) -> LearnedReading:
    """The learned layer's reading as the verdict keeps it."""
    clause = prediction.clause
    return LearnedReading(
        probability=prediction.p_any,
        p_emergency=prediction.p_emergency,
        criterion=criterion,
        clause=clause.text if clause else "",
        start=clause.start if clause else 0,
        end=clause.end if clause else 0,
        flag_at=settings.flag_at,
        review_at=settings.review_at,
        emergency_at=settings.emergency_at,
        checked=tuple(settings.gated_by),
        not_read=tuple(c.text for c in prediction.gated),
        neighbours=prediction.neighbours[: settings.neighbours],
    )


def combine(
    rules: Verdict,
    prediction: Prediction | None,
    language: LanguageRead | None,
    settings: LearnedSettings,
    tiers: Mapping[str, Tier],
) -> Verdict:
    """The one verdict for a reply, from the rules' verdict, the learned layer's prediction and its language."""
    code = language.code if language else None
    if prediction is None:  # too short for the learned layer: the rules alone (and the language, if any)
        if rules.level == Level.NONE and language is not None and not language.readable:
            return _review(rules, code, None, "language")
        return replace(rules, language=code, layer="rules" if rules.level != Level.NONE else None)
    prediction = _without(prediction, settings.rules_only, tiers)
    top = prediction.ranked[0][0] if prediction.ranked else prediction.criterion
    leans_emergency = tiers.get(top or "") == Tier.EMERGENCY and prediction.p_emergency >= settings.nearest_emergency_at
    # A confident finding takes that tier; in the review band the lean makes an urgent review instead (staff now,
    # re-alerted until acknowledged), not a 911/988 answer: it read "please stop texting me" as nearest self-harm.
    nearest_emergency = prediction.p_any >= settings.flag_at and leans_emergency
    emergency = prediction.p_any >= settings.review_at and (
        prediction.p_emergency >= settings.emergency_at or nearest_emergency
    )
    flag = prediction.p_any >= settings.flag_at or emergency
    capped = emergency and rules.gradual and settings.gradual_caps_emergency
    capped = capped and _criterion(prediction, tiers, True) not in settings.never_capped
    if capped and rules.level == Level.NONE:
        # Told as a slow change ("desde hace semanas", "little by little"): the model's emergency reading alone is
        # not a 911 answer; it stays flagged, at the tier below (found on blind sets: gradual swallowing, breathing
        # and speech changes in Spanish answered as emergencies).
        emergency, leans_emergency = False, False
    criterion = _criterion(prediction, tiers, emergency)
    kept = reading(prediction, settings, criterion)
    if rules.level != Level.NONE:
        both = replace(rules, language=code, layer="both" if flag else "rules", learned=kept)
        sure = _sure_emergency(prediction, settings, emergency) and not capped
        if rules.level == Level.RED_FLAG and criterion is not None and sure:
            # The rules found a lesser criterion (weakness, persisting) in a reply the learned layer is sure is an
            # emergency (self-harm, a collapse, a stroke): the more serious reading stands, with both criteria.
            return replace(both, level=Level.EMERGENCY, tier=Tier.EMERGENCY, criteria=(*rules.criteria, criterion))
        return both
    if language is not None and not language.readable:
        return _review(rules, code, kept, "language")
    if flag and criterion is not None:
        tier = tiers[criterion]
        level = Level.EMERGENCY if tier == Tier.EMERGENCY else Level.RED_FLAG
        if level == Level.EMERGENCY and not emergency:  # capped above, and the model ranks no lesser criterion
            tier, level = Tier.URGENT, Level.RED_FLAG
        return replace(
            rules, level=level, tier=tier, criteria=(criterion,), language=code, layer="learned", learned=kept
        )
    if prediction.p_any >= settings.review_at:
        exempt = leans_emergency and not settings.leaning_review_needs_neighbour
        if settings.review_needs_flagged_neighbour and not exempt and _all_benign(prediction, settings):
            return replace(rules, language=code, learned=replace(kept, cleared_by_neighbours=True))
        return _review(rules, code, kept, "learned", Tier.URGENT if leans_emergency else Tier.ROUTINE)
    return replace(rules, language=code, learned=kept)


def _all_benign(prediction: Prediction, settings: LearnedSettings) -> bool:
    """All of the reply's `review_neighbours` closest labelled examples needed nothing (and there are that many)."""
    labels = [n.label for n in prediction.neighbours[: settings.review_neighbours]]
    return len(labels) >= max(settings.review_neighbours, 1) and all(label == NONE for label in labels)


def _sure_emergency(prediction: Prediction, settings: LearnedSettings, emergency: bool) -> bool:
    """An emergency finding confident enough to raise the rules' red flag: both p(any) and p(emergency) at or
    above flag_at (more likely than not an emergency), not the lower bars that decide a reply no rule read."""
    return emergency and prediction.p_any >= settings.flag_at and prediction.p_emergency >= settings.raise_at


def _criterion(prediction: Prediction, tiers: Mapping[str, Tier], emergency: bool) -> str | None:
    """The most likely emergency criterion for an emergency, else the most likely criterion of a lower tier
    (so the tier agrees with the level); the most likely criterion when the model ranks nothing else."""
    for cid, _p in prediction.ranked:
        if (tiers.get(cid) == Tier.EMERGENCY) == emergency:
            return cid
    return prediction.criterion


def _without(prediction: Prediction, criteria: tuple[str, ...], tiers: Mapping[str, Tier]) -> Prediction:
    """The prediction with the mass of `criteria` (those only the rules may decide) moved to "none"."""
    if not criteria:
        return prediction
    moved = sum(p for cid, p in prediction.ranked if cid in criteria)
    moved_em = sum(p for cid, p in prediction.ranked if cid in criteria and tiers.get(cid) == Tier.EMERGENCY)
    ranked = tuple((cid, p) for cid, p in prediction.ranked if cid not in criteria)
    return replace(
        prediction,
        p_any=round(max(0.0, prediction.p_any - moved), 4),
        p_emergency=round(max(0.0, prediction.p_emergency - moved_em), 4),
        ranked=ranked,
        criterion=ranked[0][0] if ranked else None,
        p_criterion=ranked[0][1] if ranked else 0.0,
    )


def _review(
    rules: Verdict, code: str | None, kept: LearnedReading | None, why: str, tier: Tier = Tier.ROUTINE
) -> Verdict:
    assert why in ("learned", "language")
    return replace(
        rules,
        level=Level.RED_FLAG,
        tier=tier,
        criteria=(),
        language=code,
        layer="language" if why == "language" else "learned",
        review=True,
        review_reason="language" if why == "language" else "learned",
        learned=kept,
    )


def unread_to_review(verdict: Verdict) -> Verdict:
    """A reply the detector could not read whole (past its per-reply limit) and found nothing in is a review item
    for staff, never "none": the rest may hold the red flag. A finding in the part read stands as it is."""
    if verdict.level != Level.NONE or verdict.unread_from is None:
        return verdict
    return replace(
        verdict,
        level=Level.RED_FLAG,
        tier=Tier.ROUTINE,
        criteria=(),
        layer=verdict.layer or "rules",
        review=True,
        review_reason="unread",
    )
