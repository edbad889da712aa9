"""Accounts and bearer secrets: users, API tokens, OAuth2 access tokens and browser sessions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core import security
from app.db.base import utcnow
from app.db.models import ROLES, ApiToken, User
from app.services.errors import Conflict, Invalid, NotFound

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD_LENGTH = 8
ACCESS_TOKEN_TTL = timedelta(hours=12)
SESSION_TTL = timedelta(hours=12)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")


def create_user(session: Session, username: str, password: str, role: str) -> User:
    if not USERNAME_RE.match(username):
        raise Invalid("A user name has 1 to 64 letters, digits or . _ @ - characters.")
    _check_role(role)
    _check_password(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(username=username, password_hash=security.hash_password(password), role=role, is_active=True)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def get_user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def update_user(
    session: Session,
    user: User,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> User:
    if role is not None and role != user.role:
        _check_role(role)
        user.role = role
        session.flush()
        from app.services.labels import recount_labeled  # labels -> users would be a cycle at import

        recount_labeled(session, user.id)
    if is_active is not None:
        user.is_active = is_active
        if not is_active:
            revoke_all_tokens(session, user)
    if password is not None:
        _check_password(password)
        user.password_hash = security.hash_password(password)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, else None (same cost either way)."""
    user = session.scalar(select(User).where(User.username == username))
    ok = security.verify_password(password, user.password_hash if user else None)
    if not ok or user is None or not user.is_active:
        return None
    if security.needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    return user


@dataclass
class IssuedToken:
    token: str  # the secret, shown once
    row: ApiToken


def issue_token(
    session: Session,
    user: User,
    kind: str,
    *,
    name: str = "",
    ttl: timedelta | None = None,
    created_by: User | None = None,
) -> IssuedToken:
    secret = security.new_token()
    row = ApiToken(
        user_id=user.id,
        kind=kind,
        name=name,
        token_hash=security.hash_token(secret),
        created_by_id=created_by.id if created_by else user.id,
        expires_at=utcnow() + ttl if ttl else None,
    )
    session.add(row)
    session.flush()
    return IssuedToken(secret, row)


def resolve_token(session: Session, secret: str, kinds: tuple[str, ...]) -> ApiToken | None:
    """The live token row for this secret (not revoked, not expired, active user), else None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == security.hash_token(secret)))
    if row is None or row.kind not in kinds or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not row.user.is_active:
        return None
    return row


def revoke_token(session: Session, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"No token with id {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return row


def revoke_secret(session: Session, secret: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == security.hash_token(secret)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


def revoke_all_tokens(session: Session, user: User) -> None:
    now = utcnow()
    for row in session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ):
        row.revoked_at = now
    session.flush()


def list_tokens(session: Session, *, kind: str = "api") -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.kind == kind).order_by(ApiToken.id)))


def token_is_live(row: ApiToken, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)
