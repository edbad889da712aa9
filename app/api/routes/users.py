"""Account management (admin): users and long-lived API tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import AdminUser, SessionDep
from app.api.schemas import TokenCreate, TokenCreated, TokenOut, UserCreate, UserOut, UserUpdate
from app.db.models import ApiToken
from app.services import users
from app.services.errors import Invalid

router = APIRouter(tags=["users"])


@router.get("/users", response_model=list[UserOut])
def list_users(_: AdminUser, session: SessionDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in users.list_users(session)]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, _: AdminUser, session: SessionDep) -> UserOut:
    user = users.create_user(session, body.username, body.password, body.role)
    session.commit()
    return UserOut.model_validate(user)


@router.patch("/users/{user_id}", response_model=UserOut)
def update_user(user_id: int, body: UserUpdate, admin: AdminUser, session: SessionDep) -> UserOut:
    user = users.get_user(session, user_id)
    if user.id == admin.id and (body.is_active is False or (body.role and body.role != "admin")):
        raise Invalid("You cannot disable or demote your own account; ask another admin.")
    users.update_user(session, user, role=body.role, is_active=body.is_active, password=body.password)
    session.commit()
    return UserOut.model_validate(user)


def _token_out(row: ApiToken) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "username": row.user.username,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(_: AdminUser, session: SessionDep) -> list[dict]:
    return [_token_out(r) for r in users.list_tokens(session)]


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, admin: AdminUser, session: SessionDep) -> dict:
    """Issue a long-lived API token; the secret is in this response only (stored hashed)."""
    from datetime import timedelta

    owner = users.get_user_by_name(session, body.username) if body.username else admin
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = users.issue_token(session, owner, "api", name=body.name, ttl=ttl, created_by=admin)
    session.commit()
    return {**_token_out(issued.row), "token": issued.token}


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: int, _: AdminUser, session: SessionDep) -> dict:
    row = users.revoke_token(session, token_id)
    session.commit()
    return _token_out(row)
