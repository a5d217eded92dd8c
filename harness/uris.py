"""Store addresses as shown to people: one redaction for every place a URI is printed, raised in
an error or written into a report.

A tracking URI or study storage may carry credentials (``postgresql://user:password@host/db``,
``http://user:password@host:5000``).  What a terminal, a log line or a report artifact shows
keeps the user name and replaces the password with ``***``; only the code that connects sees
the URI as given.

``redact`` masks, in any text (a traceback, an error line), every password this process was
given (``remember_password``: each store address that carries one is remembered as it is
opened) and the password of any URI written out in it.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

# ``scheme://user:password@``: the password is what lies between the user's colon and the @.
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):([^@\s/]*)@")
_PASSWORDS: set[str] = set()
_LOCK = threading.Lock()


def remember_password(uri: str | None) -> None:
    """Note ``uri``'s password (as written and decoded), so that ``redact`` masks it anywhere."""
    password = password_of(uri) if uri else None
    if password:
        with _LOCK:
            _PASSWORDS.update({password, unquote(password)})


def password_of(uri: str) -> str | None:
    """The password in ``uri``'s user information as written (percent-encoded), or None."""
    if "://" not in uri:
        return None
    try:
        netloc = urlsplit(uri).netloc
    except ValueError:
        return None
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.partition(":")[2] or None


def redact(text: str) -> str:
    """``text`` with every URI's password and every password this process was given masked."""
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    with _LOCK:
        # Longest first: a password that contains another is masked whole.
        passwords = sorted(_PASSWORDS, key=len, reverse=True)
    for password in passwords:
        text = text.replace(password, MASK)
    return text


def redact_uri(uri: str) -> str:
    """``uri`` with any password in its user information replaced by ``***``."""
    if "://" not in uri or "@" not in uri.split("://", 1)[1].split("/", 1)[0]:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:{MASK}" if has_password else user
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def split_credentials(url: str) -> tuple[str, str | None]:
    """An HTTP(S) URL without its user information, and the ``Authorization`` header value
    (basic) that carries it, or None when it has none."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def redact_text(text: str, uri: str) -> str:
    """``text`` (an exception's message, say) with ``uri``'s password masked wherever it
    appears, inside the URI or alone."""
    text = text.replace(uri, redact_uri(uri))
    try:
        password = urlsplit(uri).password
    except ValueError:
        return text
    return text.replace(password, MASK) if password else text
