"""Request dependencies: database session, settings, storage, the caller and role rules.

Credentials, in order: an ``Authorization: Bearer`` token (API token or OAuth2 access token), else
the browser session cookie. A cookie-authenticated request that changes state must also carry the
CSRF token in ``X-CSRF-Token``; bearer requests need not (browsers never add them on their own).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from app.core import security
from app.core.config import Settings
from app.db.models import ApiToken, User
from app.db.session import begin_read
from app.services import users
from app.services.errors import Forbidden, Unauthorized
from app.services.storage import Storage

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_db(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory(write=request.method not in SAFE_METHODS)
    try:
        yield session
    finally:
        session.close()  # anything a service did not commit is rolled back


# Dependencies that do no I/O are ``async def`` so FastAPI runs them inline instead of sending
# each one to the thread pool (a label PUT would otherwise hop threads six times).


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]


@dataclass
class Principal:
    user: User
    token: ApiToken
    via: str  # "bearer" or "cookie"
    secret: str


def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    begin_read(session)  # SQLite: the lookup does not take the write lock (it commits below)
    try:
        if bearer:
            row = users.resolve_token(session, bearer, ("api", "access"))
            if row is None:
                raise Unauthorized("The bearer token is invalid, expired or revoked.")
            return Principal(row.user, row, "bearer", bearer)
        cookie = request.cookies.get(security.SESSION_COOKIE)
        if not cookie:
            raise Unauthorized("Not signed in: sign in, or send an Authorization: Bearer token.")
        row = users.resolve_token(session, cookie, ("session",))
        if row is None:
            raise Unauthorized("Your session has expired or was ended; please sign in again.")
        if request.method not in SAFE_METHODS and not security.csrf_ok(
            cookie, request.headers.get(security.CSRF_HEADER), settings.secret_key
        ):
            raise Forbidden(
                f"Missing or wrong CSRF token: send the {security.CSRF_HEADER} header with the value of "
                f"the {security.CSRF_COOKIE} cookie."
            )
        return Principal(row.user, row, "cookie", cookie)
    finally:
        # On SQLite, end the lookup's transaction now: a write request holds the write lock from
        # its first statement, and the body (an upload) may still be streaming in. PostgreSQL
        # keeps it: a read transaction locks nothing, and reusing it saves round trips.
        if session.get_bind().dialect.name == "sqlite":
            session.commit()


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: str):
    async def dependency(user: CurrentUser) -> User:
        if user.role not in roles:
            raise Forbidden(f"This needs the {' or '.join(roles)} role; you are signed in as a {user.role}.")
        return user

    return dependency


AdminUser = Annotated[User, Depends(require_role("admin"))]
AnnotatorUser = Annotated[User, Depends(require_role("admin", "annotator"))]
