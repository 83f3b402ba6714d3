"""Printing a URL without the secret it may carry (judge endpoints, Redis URLs).

Endpoint and cache URLs end up in exception messages, ``.endpoint`` attributes, log lines and
reports, and any of these may be pasted into an issue. A password written into the URL
(``http://user:PASSWORD@host/v1``, ``redis://:PASSWORD@host:6379/0``, ``?password=PASSWORD``)
must never travel with them: :func:`redact_url` is the one place that hides it.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_url"]

#: What a hidden secret is shown as.
MASK = "***"

# scheme://authority, then the rest (path, query, fragment)
_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#]*)(?P<rest>.*)\Z", re.DOTALL)
# a query parameter whose value is a secret (redis-py reads ?password=; other clients use the others)
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;](?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey|auth)=)[^&;#]*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; the user name, host, port, path and the
    other query parameters stay as they were, and a URL without a secret comes back unchanged.

    >>> redact_url("http://user:s3cret@judge-node:8001/v1")
    'http://user:***@judge-node:8001/v1'
    >>> redact_url("redis://:s3cret@judge-node:6379/0")
    'redis://:***@judge-node:6379/0'
    >>> redact_url("redis://judge-node:6379/0?db=1&password=s3cret")
    'redis://judge-node:6379/0?db=1&password=***'
    >>> redact_url("redis://speciarl@judge-node:6379/0")  # a user name alone is no secret
    'redis://speciarl@judge-node:6379/0'
    >>> redact_url("http://127.0.0.1:8001/v1")
    'http://127.0.0.1:8001/v1'
    """
    match = _AUTHORITY.match(url)
    if match is None:  # no scheme://: not a URL we build, but hide a secret parameter all the same
        return _SECRET_PARAMETER.sub(rf"\g<name>{MASK}", url)
    authority, rest = match["authority"], match["rest"]
    if "@" in authority:
        # the host follows the last "@"; the user name ends at the first ":" of what precedes it
        userinfo, _, host = authority.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            authority = f"{user}:{MASK}@{host}"
    rest = _SECRET_PARAMETER.sub(rf"\g<name>{MASK}", rest)
    return f"{match['scheme']}{authority}{rest}"
