"""Passwords, bearer tokens, the browser session cookie and its CSRF token.

- Passwords: argon2id (argon2-cffi defaults), rehashed transparently when the parameters change.
- Tokens (API tokens, OAuth2 access tokens, browser sessions) are 256-bit random secrets; the
  database stores only their SHA-256, so a copy of the database grants nothing.
- CSRF: the browser receives, next to the HttpOnly session cookie, a CSRF token derived from the
  session secret with an HMAC keyed by Settings.secret_key. JavaScript reads it from a
  non-HttpOnly cookie (or the login response) and echoes it in ``X-CSRF-Token`` on every
  state-changing request; a forged cross-site request can send the cookie but cannot read it.
  Bearer-token requests need no CSRF token: browsers never attach them on their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_COOKIE = "patchscreen_session"
CSRF_COOKIE = "patchscreen_csrf"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "ps_"

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong user name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A fresh bearer secret (shown to its owner once, stored only as ``hash_token``)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def csrf_token_for(session_token: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, presented: str | None, secret_key: str) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token_for(session_token, secret_key), presented)
