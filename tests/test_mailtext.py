"""Email replies: the patient's own words without quoted history or signature; HTML made plain text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.parsing.mailtext import extract_reply, html_to_text

_HEADER = "On Mon, Nov 30, 2026 at 9:00 AM Clinic <followup@clinic.example> wrote:"
_OUTLOOK = (
    "From: Clinic Follow-up <followup@clinic.example>\nSent: Monday, 30 November 2026 09:00\nTo: Pat\n"
    "Subject: RE: Your check-in\n\nHave you noticed any weakness?"
)

REPLIES = [
    ("gmail-style header", f"Doing great.\n\n{_HEADER}\n> Any new weakness, trouble swallowing?", "Doing great."),
    (
        "header wrapped over two lines",
        "fine\n\nOn Mon, Nov 30, 2026 at 9:00 AM Clinic <\nfollowup@clinic.example> wrote:\n\n> Any weakness?",
        "fine",
    ),
    ("quoted lines without header", "Same as before.\n\n> From: Clinic Follow-up\n> Any numbness?", "Same as before."),
    ("outlook header block", f"All fine here\n\n{_OUTLOOK}", "All fine here"),
    ("outlook rule then block", f"legs weaker\n\n________________________________\n{_OUTLOOK}", "legs weaker"),
    (
        "original message separator",
        "No change.\n\n-----Original Message-----\nFrom: Clinic\nSent: Monday\n\nAny?",
        "No change.",
    ),
    ("bottom-posted reply", f"{_HEADER}\n> Any weakness?\n\nYes my arm is weak", "Yes my arm is weak"),
    ("nested quotes", "Better now\n\n> > old text\n> newer text", "Better now"),
    (
        "spanish gmail header",
        "Todo bien.\n\nEl lun, 30 nov 2026 a las 9:00, Clínica <c@x.example> escribió:\n\n3 Le cuesta respirar",
        "Todo bien.",
    ),
    (
        "spanish original message and outlook headers",
        "Me cuesta tragar.\n\n-----Mensaje original-----\nDe: Clínica\nEnviado: lunes\nPara: Ana\n\n3 Le cuesta",
        "Me cuesta tragar.",
    ),
    ("enviado desde mi iphone", "Se me caen las cosas\n\nEnviado desde mi iPhone", "Se me caen las cosas"),
    ("crlf line ends", f"Fine\r\n\r\n{_HEADER}\r\n> Any weakness?\r\n", "Fine"),
    ("sign-off and name", "No weakness.\n\nThanks,\nJohn", "No weakness."),
    ("sent from my phone", "I keep dropping things\n\nSent from my iPhone", "I keep dropping things"),
    ("dash-dash signature", "Hand is weak\n--\nJane\n555-1234", "Hand is weak"),
    ("best regards signature", "Hand is weak\n\nBest regards,\nJane Doe\nAccountant", "Hand is weak"),
    (
        "hyphen list is not a signature",
        "Weakness: no\n- numbness: no\n- speech: yes",
        "Weakness: no\n- numbness: no\n- speech: yes",
    ),
    (
        "sign-off word starting a sentence is kept",
        "Hello\nThanks, my arm is weaker and I keep choking.",
        "Hello\nThanks, my arm is weaker and I keep choking.",
    ),
    (
        "disclaimer-looking sentence is kept",
        "Hello\nWarning: my hand is weaker, see mail",
        "Hello\nWarning: my hand is weaker, see mail",
    ),
    (
        "a reply opening with El above a spanish header",
        "El tic del ojo sigue igual, todos los dias.\n\nEl 3 dic 2026, a las 7:58, Clínica <c@x.example> escribió:"
        "\n\n> ¿Cómo sigue?",
        "El tic del ojo sigue igual, todos los dias.",
    ),
    (
        "a reply opening with On above an english header",
        f"On Monday my left hand gave way twice.\n{_HEADER}\n> Any weakness?",
        "On Monday my left hand gave way twice.",
    ),
    (
        "answers between the quoted questions",
        "> How are you?\nSame\n> 1. Weakness\nNo\n> 2. Trouble swallowing\nYes, pills get stuck",
        "Same\nNo\nYes, pills get stuck",
    ),
    ("only quoted text", "> Any weakness?\n> yes", ""),
    ("empty", "", ""),
    ("blank", " \n\t ", ""),
    ("plain sms-like body", "my toes are numb", "my toes are numb"),
    (
        "spanish closing, name and telephone",
        "Los tics bien, casi nada.\n\nSaludos cordiales,\nPatricia Núñez\nTel. (323) 555-0148",
        "Los tics bien, casi nada.",
    ),
    ("atte and a name", "Por lo demás bien, un 1.\n\nAtte.\nVerónica Lozano", "Por lo demás bien, un 1."),
    (
        "closing, name, title and company",
        "Ya corro otra vez.\n\nCon aprecio,\nJavier Montoya\nIngeniero de Proyectos | Constructora del Valle",
        "Ya corro otra vez.",
    ),
    ("a last paragraph that is only a name", "She is doing well.\n\nMark Olsen", "She is doing well."),
    ("a plea in capitals is not a name", "I am fine\n\nPlease Help", "I am fine\n\nPlease Help"),
    (
        "words after a closing that are not a signature stay",
        "arm weak\n\nGracias\nbrazo débil desde ayer",
        "arm weak\n\nGracias\nbrazo débil desde ayer",
    ),
    (
        "first person after a closing stays",
        "fine\n\nGracias\nno puedo tragar",
        "fine\n\nGracias\nno puedo tragar",
    ),
    ("a closing alone is not cut to nothing", "Saludos", "Saludos"),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in REPLIES], ids=[r[0] for r in REPLIES])
def test_extract_reply(body: str, expected: str) -> None:
    """The newest reply is returned without quoted history, reply headers or signature."""
    assert extract_reply(body) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>My arm is <b>weaker</b>.</p>", "My arm is weaker."),
        ("<html><head><title>T</title><style>p{color:red}</style></head><body>fine</body></html>", "fine"),
        ("<script>alert('numb')</script><p>ok</p><noscript>weak</noscript>", "ok"),
        ('<p>dropping things</p><img src="cid:1" alt="photo">', "dropping things"),
        ('<a href="https://example.com">link text</a>', "link text"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    """HTML becomes unwrapped plain text; scripts, styles, images and link targets are dropped."""
    assert html_to_text(html) == expected


def test_html_quote_is_stripped_after_conversion() -> None:
    """A Gmail HTML reply converted to text loses its quoted question."""
    html = (
        '<div dir="ltr">I keep dropping things</div><div class="gmail_quote"><div class="gmail_attr">'
        f"{_HEADER.replace('<', '&lt;').replace('>', '&gt;')}<br></div>"
        '<blockquote class="gmail_quote">Any new weakness?</blockquote></div>'
    )
    assert extract_reply(html_to_text(html)) == "I keep dropping things"


def test_long_lines_are_not_wrapped() -> None:
    """html_to_text keeps long sentences on one line (no wrapping inside a phrase)."""
    sentence = "my " + "very " * 40 + "weak hand"
    assert html_to_text(f"<p>{sentence}</p>") == sentence


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=600))
def test_extract_reply_never_raises(body: str) -> None:
    """Any text gives a string, never an exception, and never text that was not in the body."""
    reply = extract_reply(body)
    assert isinstance(reply, str)
    for line in reply.splitlines():
        assert line.strip() in body.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=100, deadline=None)
@given(html=st.text(max_size=400))
def test_html_to_text_never_raises(html: str) -> None:
    """Any input gives a string, never an exception."""
    assert isinstance(html_to_text(html), str)
