"""Store addresses as shown to people: one redaction for every place a URI is printed, raised in
an error or written into a report.

A tracking URI or study storage may carry credentials (``postgresql://user:password@host/db``,
``http://user:password@host:5000``).  What a terminal, a log line or a report artifact shows
keeps the user name and replaces the password with ``***``; only the code that connects sees
the URI as given.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit, urlunsplit

MASK = "***"


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
    from urllib.parse import unquote

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
