"""Routes of operator accounts (the web UI's users) and of the caller's own identity."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acs.core.passwords import MIN_LENGTH, PasswordRejected
from acs.logs import log
from acs.services import accounts
from acs.store import users
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import TOKEN, api, audit_note, body_of, json_out, services
from acs.web.ui.session import SESSION

logger = logging.getLogger("acs.api")
Role = Literal["admin", "operator", "viewer"]


# the document states the password rule; acs.core.passwords enforces it, with
# its own message
_PASSWORD_RULE: dict[str, Any] = {"minLength": MIN_LENGTH}


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=1, max_length=1024, json_schema_extra=_PASSWORD_RULE)
    role: Role


class UserChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    password: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="ends the user's sessions",
        json_schema_extra=_PASSWORD_RULE,
    )


class UserOut(BaseModel):
    username: str
    role: str
    created: datetime
    passwordChanged: datetime
    lastLogin: datetime | None = None


class UserListOut(BaseModel):
    items: list[UserOut]


class MeOut(BaseModel):
    name: str = Field(description="a token's name, or user:<username> for a UI session")
    role: str
    kind: Literal["token", "user"]


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024, json_schema_extra=_PASSWORD_RULE)


def user_out(u: users.User) -> UserOut:
    return UserOut(
        username=u.username,
        role=u.role,
        created=u.created_at,
        passwordChanged=u.password_changed_at,
        lastLogin=u.last_login_at,
    )


def _rejected(err: ValueError, path: str) -> ApiError:
    return ApiError(400, "invalid_body", str(err), [{"path": path, "message": str(err)}])


@api.route(
    "GET",
    "/users",
    role="admin",
    tag="admin",
    summary="List web UI users",
    responses={200: (UserListOut, "users (never their password hash)")},
)
async def list_users(request: web.Request) -> web.Response:
    """Names, roles, last sign-in."""
    async with services(request).pool.acquire() as conn:
        items = await users.list_users(conn)
    return json_out(UserListOut(items=[user_out(u) for u in items]))


@api.route(
    "POST",
    "/users",
    audit="user.create",
    audit_object="user",
    role="admin",
    tag="admin",
    summary="Create a web UI user",
    body=UserIn,
    responses={201: (UserOut, "created"), 409: (None, "name taken")},
)
async def create_user(request: web.Request) -> web.Response:
    """Passwords have at least 10 characters and are stored as Argon2id hashes."""
    body: UserIn = await body_of(request, UserIn)
    audit_note(request, object_id=body.username, role=body.role)
    async with services(request).pool.acquire() as conn:
        try:
            user = await accounts.create_user(conn, body.username, body.password, body.role)
        except PasswordRejected as err:
            raise _rejected(err, "password") from None
        except ValueError as err:
            raise ApiError(409, "exists", str(err)) from None
    log(logger, logging.INFO, "user_created", user=user.username, token=request[TOKEN].name)
    return json_out(user_out(user), 201)


async def _refuse_last_admin(request: web.Request, username: str, what: str) -> None:
    # the UI must not lock every admin out; `acs user create` on the server
    # remains the way back in, but nobody should need it by accident
    async with services(request).pool.acquire() as conn:
        user = await users.get_user(conn, username)
        if user is not None and user.role == "admin" and await users.count_admins(conn) == 1:
            raise ApiError(409, "last_admin", f"{username!r} is the last admin user; {what}")


@api.route(
    "PATCH",
    "/users/{username}",
    audit="user.update",
    role="admin",
    tag="admin",
    summary="Change a user's role or password",
    body=UserChangeIn,
    responses={
        200: (UserOut, "changed"),
        404: (None, "unknown user"),
        409: (None, "the last admin may not lose the role"),
    },
)
async def change_user(request: web.Request) -> web.Response:
    """A new password ends the user's sessions; a new role applies to them at once."""
    username = request.match_info["username"]
    body: UserChangeIn = await body_of(request, UserChangeIn)
    if body.role is not None and body.role != "admin":
        await _refuse_last_admin(request, username, "make another user admin first")
    async with services(request).pool.acquire() as conn:
        if await users.get_user(conn, username) is None:
            raise not_found(f"user {username!r}")
        if body.password is not None:
            try:
                await accounts.change_password(conn, username, body.password)
            except PasswordRejected as err:
                raise _rejected(err, "password") from None
        if body.role is not None:
            await users.set_role(conn, username, body.role)
        user = await users.get_user(conn, username)
    if user is None:
        raise not_found(f"user {username!r}")
    log(logger, logging.INFO, "user_changed", user=username, token=request[TOKEN].name)
    return json_out(user_out(user))


@api.route(
    "DELETE",
    "/users/{username}",
    audit="user.delete",
    role="admin",
    tag="admin",
    summary="Delete a web UI user",
    responses={
        204: (None, "deleted, sessions ended"),
        404: (None, "unknown user"),
        409: (None, "the last admin may not be deleted"),
    },
)
async def delete_user(request: web.Request) -> web.Response:
    """Campaigns and policies keep the name of who created them."""
    username = request.match_info["username"]
    await _refuse_last_admin(request, username, "make another user admin first")
    async with services(request).pool.acquire() as conn:
        if not await users.delete_user(conn, username):
            raise not_found(f"user {username!r}")
    log(logger, logging.INFO, "user_deleted", user=username, token=request[TOKEN].name)
    return web.Response(status=204)


@api.route(
    "GET",
    "/me",
    role="viewer",
    tag="admin",
    summary="Who this request speaks for",
    responses={200: (MeOut, "the caller's name and role")},
)
async def me(request: web.Request) -> web.Response:
    """Lets a client show only what its role may do."""
    who = request[TOKEN]
    kind: Literal["token", "user"] = "user" if SESSION in request else "token"
    return json_out(MeOut(name=who.name, role=who.role, kind=kind))


@api.route(
    "POST",
    "/me/password",
    audit="user.password.change",
    audit_object="user",
    role="viewer",
    tag="admin",
    summary="Change your own password (web UI users)",
    body=PasswordChangeIn,
    responses={
        204: (None, "changed; every session of the user ended, sign in again"),
        400: (None, "wrong current password or a weak new one"),
        429: (None, "too many wrong passwords for this user or address"),
        409: (None, "the caller is an API token, which has no password"),
    },
)
async def change_own_password(request: web.Request) -> web.Response:
    """Needs the current password, so a hijacked session cannot lock its owner out."""
    if SESSION not in request:
        raise ApiError(409, "not_a_user", "API tokens have no password; create a new token")
    username = request[SESSION].username
    audit_note(request, object_id=username)
    body: PasswordChangeIn = await body_of(request, PasswordChangeIn)
    svc = services(request)
    # the same throttle as the sign-in form: a stolen session must not become
    # an unthrottled oracle for its owner's password
    attempt = await svc.sign_in.attempt(
        svc.pool, username, body.current, request.remote or "unknown"
    )
    if attempt.retry_after > 0:
        raise ApiError(
            429,
            "throttled",
            f"too many wrong passwords; try again in {int(attempt.retry_after) + 1} s",
        )
    if attempt.user is None:
        raise ApiError(
            400,
            "wrong_password",
            "the current password is wrong",
            [{"path": "current", "message": "wrong password"}],
        )
    async with svc.pool.acquire() as conn:
        try:
            await accounts.change_password(conn, username, body.new)
        except PasswordRejected as err:
            raise _rejected(err, "new") from None
    log(logger, logging.INFO, "password_changed", user=username)
    return web.Response(status=204)
