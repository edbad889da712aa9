"""Sign-in for REST clients (OAuth2 password flow) and browsers (session cookie + CSRF token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import ValidationError

from app.api.deps import CurrentUser, PrincipalDep, SessionDep, SettingsDep
from app.api.schemas import AccessToken, LoginIn, LoginOut, Message, UserOut
from app.core import security
from app.services import users
from app.services.errors import Invalid, Unauthorized

router = APIRouter(prefix="/auth", tags=["auth"])

BAD_LOGIN = "Wrong user name or password (or the account is disabled)."


@router.post("/token", response_model=AccessToken)
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> AccessToken:
    """OAuth2 password flow: trade a user name and password for a bearer token (valid 12 hours)."""
    user = users.authenticate(session, form.username, form.password)
    if user is None:
        raise Unauthorized(BAD_LOGIN)
    issued = users.issue_token(session, user, "access", name="oauth2", ttl=users.ACCESS_TOKEN_TTL)
    session.commit()
    return AccessToken(access_token=issued.token, expires_in=int(users.ACCESS_TOKEN_TTL.total_seconds()))


async def _login_body(request: Request) -> LoginIn:
    """JSON (JavaScript) or an HTML form (works without JavaScript); anything else is a clear 422."""
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            return LoginIn.model_validate(await request.json())
        form = await request.form()
        return LoginIn.model_validate(
            {"username": form.get("username", ""), "password": form.get("password", "")}
        )
    except (ValueError, ValidationError):  # bad JSON, wrong shape, an unparsable form
        raise Invalid("Send a user name and a password (JSON or form fields username, password).") from None


@router.post(
    "/login",
    response_model=LoginOut,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": LoginIn.model_json_schema()},
                "application/x-www-form-urlencoded": {"schema": LoginIn.model_json_schema()},
            },
            "required": True,
        }
    },
)
async def login(request: Request, response: Response, session: SessionDep, settings: SettingsDep) -> LoginOut:
    """Browser sign-in: sets the HttpOnly session cookie and the CSRF cookie, returns the CSRF token."""
    body = await _login_body(request)
    from starlette.concurrency import run_in_threadpool

    def work():
        user = users.authenticate(session, body.username, body.password)
        if user is None:
            raise Unauthorized(BAD_LOGIN)
        issued = users.issue_token(session, user, "session", name="browser", ttl=users.SESSION_TTL)
        session.commit()
        return user, issued

    user, issued = await run_in_threadpool(work)
    csrf = security.csrf_token_for(issued.token, settings.secret_key)
    max_age = int(users.SESSION_TTL.total_seconds())
    response.set_cookie(
        security.SESSION_COOKIE,
        issued.token,
        max_age=max_age,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        security.CSRF_COOKIE,
        csrf,
        max_age=max_age,
        httponly=False,
        secure=settings.cookie_secure,
        samesite="strict",
        path="/",
    )
    return LoginOut(user=UserOut.model_validate(user), csrf_token=csrf, expires_at=issued.row.expires_at)


@router.post("/logout", response_model=Message)
def logout(
    principal: PrincipalDep, response: Response, session: SessionDep, settings: SettingsDep
) -> Message:
    """End this session (cookie) or revoke this bearer token; other sessions stay signed in."""
    users.revoke_secret(session, principal.secret)
    session.commit()
    response.delete_cookie(security.SESSION_COOKIE, path="/", secure=settings.cookie_secure, httponly=True)
    response.delete_cookie(security.CSRF_COOKIE, path="/", secure=settings.cookie_secure)
    return Message(detail="Signed out.")


@router.get("/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
