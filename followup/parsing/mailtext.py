"""The patient's own words from an email: quoted history and signatures removed, HTML made plain text.

Email replies quote the clinic's question ("Have you noticed any weakness?") under the answer; left in, it
would raise a red flag on every "Doing great." The maintained `mail-parser-reply` library finds reply
headers ("On ... wrote:", Outlook "From: / Sent:" blocks, "-----Original Message-----") and signatures; a
small fallback of our own removes what it leaves: "> " quoted lines without a header, header blocks it
missed, and its signature or disclaimer cuts that would swallow a sentence of the patient's.
"""

from __future__ import annotations

import re

import html2text
from mailparser_reply.parser import EmailMessage

_QUOTED = re.compile(r"^[ \t]*>")
# An attribution line, wrapped over a few lines at most: it never crosses a blank line or a sentence's end, so a
# reply that opens with "El ojo ..." or "On Monday ..." is not taken for the header below it (it was erased whole).
_IN_HEADER = r"(?:(?![.!?][ \t]*\r?\n|\r?\n[ \t]*\r?\n).)"
_WROTE = re.compile(
    rf"^[ \t]*(On\b{_IN_HEADER}{{0,300}}?\bwrote|El\b{_IN_HEADER}{{0,300}}?\bescribi[óo]):[ \t]*$",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_ORIGINAL = re.compile(
    r"^[ \t]*-{2,}[ \t]*((Original|Forwarded) Message|Mensaje (original|reenviado))[ \t]*-{2,}",
    re.IGNORECASE | re.MULTILINE,
)
_OUTLOOK_RULE = re.compile(r"^[ \t]*_{10,}[ \t]*$", re.MULTILINE)
_HEADER_LINE = re.compile(
    r"^[ \t*]*(From|Sent|Date|To|Subject|Cc|De|Enviado|Fecha|Para|Asunto|CC)[ \t*]*:", re.IGNORECASE
)
_SENT_FROM = re.compile(
    r"^[ \t]*(Sent from my|Get Outlook for|Enviado desde|Obtener Outlook para)\b.*$", re.IGNORECASE | re.MULTILINE
)
_SIGNOFF = re.compile(
    r"^(--\s*|__+\s*|(best|kind|warm)?\s*(regards|wishes)|best|thanks|thank you|many thanks|cheers|all the best"
    r"|sincerely|yours( truly| sincerely)?|take care|sent from my .*|get outlook for .*)[,.!]*"
    r"(\s+[A-Z][\w.'-]*){0,3}\s*$",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(r"\b(i|i'm|im|my|me|mine)\b", re.IGNORECASE)
# A closing on a line of its own, in English or Spanish: what follows it to the end (a name, a title, a number) is
# a signature the library left. The closing alone: "Gracias, me cuesta tragar" is a sentence, not a closing.
_CLOSING = re.compile(
    r"^[ \t]*((best|kind|warm|warmest|many)?\s*(regards|wishes)|best|warmly|thanks|thank you|many thanks|cheers"
    r"|sincerely|yours( truly| sincerely)?|respectfully|take care|all the best|love|god bless"
    r"|(un |muchos |cordiales )?saludos( cordiales| afectuosos)?|un (cordial )?saludo|atentamente|atte|cordialmente"
    r"|(un )?abrazo(s)?|besos|(muchas |mil )?gracias( de antemano| por todo)?|con (aprecio|cari[ñn]o|afecto)"
    r"|bendiciones|que dios (los|les|la|lo) bendiga|quedo (atent[oa]|a la espera)|hasta pronto)[ \t]*[,.!]*[ \t]*$",
    re.IGNORECASE,
)
# A last paragraph that is only a name ("Mark Olsen", "Jessica"): capitalised words, none of them a plea.
_NAME_LINE = re.compile(r"^[ \t]*((?:[A-ZÁÉÍÓÚÑ][\w'.-]*|[A-ZÁÉÍÓÚÑ]\.)[ \t]*){1,4}$")
_NOT_A_NAME = re.compile(
    r"\b(help|please|urgent|emergency|call|now|sos|ayuda|auxilio|socorro|urgente|llamen|llame|ya|por favor)\b",
    re.IGNORECASE,
)
_FIRST_PERSON_ES = re.compile(r"\b(yo|mi|mis|me|estoy|tengo|puedo|siento)\b", re.IGNORECASE)
_DROP_TAGS = re.compile(r"<(script|style|noscript|template|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def extract_reply(body: str) -> str:
    """The newest reply in a plain-text email body, without quoted history or signature."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return ""
    try:
        message = EmailMessage(text=text, languages=["en", "es"], keep_hyphen_lists=True).read()
        replies = [r for r in message.replies if r.content.strip()]
    except Exception:  # a parser failure must not lose the reply: fall back to our own rules
        replies = []
    if replies:
        reply = replies[0]
        content = (
            reply.content.replace(reply.headers, _before_header(reply.headers), 1) if reply.headers else reply.content
        )
        for cut in [*reply.disclaimers, reply.signatures]:
            if cut and _safe_to_cut(cut):
                content = content.replace(cut, "")
        text = content
    return _fallback(text).strip()


def _before_header(headers: str) -> str:
    """What the parser took for the reply header but comes before the attribution line itself: the patient's own
    line ("On Monday my hand gave way" above "On Mon, 30 Nov ... wrote:" was cut with it)."""
    found = _WROTE.search(headers)
    return headers[: found.start()] if found else ""


def html_to_text(html: str) -> str:
    """Plain text from an HTML email part: scripts, styles and images dropped, no line wrapping."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_links = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    return converter.handle(_DROP_TAGS.sub("", html)).strip()


def _safe_to_cut(block: str) -> bool:
    """A signature or disclaimer may go only if it cannot be the patient's own sentence."""
    lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
    if not lines:
        return True
    if _SIGNOFF.match(lines[0]):
        return all(len(line) <= 80 for line in lines[1:8]) and len(lines) <= 8
    return not _FIRST_PERSON.search(block)


def _fallback(text: str) -> str:
    """Cut at the first reply header the library missed; drop "> " lines and sent-from lines."""
    cut = len(text)
    for pattern in (_WROTE, _ORIGINAL, _OUTLOOK_RULE):
        match = pattern.search(text)
        if match and not text[: match.start()].strip():
            text = text[match.end() :]  # a header on top (bottom-posted reply): drop the header line only
            match = pattern.search(text)
        if match:
            cut = min(cut, match.start())
    lines = text[:cut].split("\n")
    for i in range(len(lines) - 1):
        if i and _HEADER_LINE.match(lines[i]) and _HEADER_LINE.match(lines[i + 1]):
            lines = lines[:i]
            break
    kept = [line for line in lines if not _QUOTED.match(line)]
    return _without_signature(_SENT_FROM.sub("", "\n".join(kept)))


def _without_signature(text: str) -> str:
    """The reply without the closing block the library left: a closing line ("Saludos cordiales,", "Atte.",
    "Thanks,") and at most five short lines after it with no first person (a name, a title, a telephone number),
    or a last paragraph that is only a name. Never the whole reply."""
    lines = text.rstrip().split("\n")
    for i in range(len(lines) - 1, 0, -1):
        tail = [line.strip() for line in lines[i + 1 :] if line.strip()]
        if len(tail) > 5 or not all(_signature_line(line) for line in tail):
            break
        if _CLOSING.match(lines[i]) and "\n".join(lines[:i]).strip():
            return "\n".join(lines[:i]).rstrip()
    paragraphs = text.rstrip().split("\n\n")
    last = paragraphs[-1].strip()
    if len(paragraphs) > 1 and _NAME_LINE.match(last) and not _NOT_A_NAME.search(last):
        return "\n\n".join(paragraphs[:-1]).rstrip()
    return text


def _signature_line(line: str) -> bool:
    """A name, a title, a company, a number or an address: short, no first person, and every longer word
    capitalised unless the line carries a number or an address ("Tel. (323) 555-0148", "Ingeniero de Proyectos")."""
    if len(line) > 60 or _FIRST_PERSON.search(line) or _FIRST_PERSON_ES.search(line):
        return False
    if _CONTACT.search(line):
        return True
    return all(w[0].isupper() for w in re.findall(r"[^\W\d_]{4,}", line))


_CONTACT = re.compile(r"\d{3}|@|https?://|www\.")
