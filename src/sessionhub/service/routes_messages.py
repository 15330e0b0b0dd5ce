"""Messages: send (user, admin, broadcast), list, mark read, and the live event stream (SSE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..exceptions import InvalidMessageError, RateLimitedError
from ..inbox import MAX_PAGE, InboxNotifier, valid_id
from ..views import MessageView
from .bodies import read_json_object
from .errors import ApiError, error_response, ok
from .routes import _hub, _settings, current_session
from .routes_users import admin_only

STREAM_BATCH = 100
MAX_USER_ID = 128


def _body_of(payload: dict[str, Any]) -> Any:
    if "body" not in payload:
        raise ApiError(422, "validation_error", "field 'body' is required")
    return payload["body"]


async def _payload(request: Request) -> dict[str, Any]:
    return await read_json_object(request, _settings(request).server.max_body_bytes)


async def _send(request: Request, to: str, body: Any, **kwargs: Any) -> Response:
    try:
        message = await _hub(request).inbox.send(to, body, **kwargs)
    except InvalidMessageError as exc:
        raise ApiError(422, "validation_error", f"field 'body': {exc}") from exc
    return ok(message, status=201)


async def admin_send(request: Request) -> Response:
    admin_only(request)
    to = request.path_params["user_id"]
    if not 1 <= len(to) <= MAX_USER_ID:
        raise ApiError(422, "validation_error", "user id must be 1..128 characters")
    return await _send(request, to, _body_of(await _payload(request)), kind="admin")


async def broadcast(request: Request) -> Response:
    admin_only(request)
    body = _body_of(await _payload(request))
    try:
        result = await _hub(request).inbox.broadcast(body)
    except InvalidMessageError as exc:
        raise ApiError(422, "validation_error", f"field 'body': {exc}") from exc
    return ok(result)


async def user_send(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    payload = await _payload(request)
    to = payload.get("to")
    if not isinstance(to, str) or not to:
        raise ApiError(422, "validation_error", "field 'to' must be a user id")
    body = _body_of(payload)
    if to not in {u.username for u in _settings(request).users}:
        raise ApiError(404, "user_not_found", "no such user")
    hub = _hub(request)
    try:
        hub.features.inbox.check_body(body)
        await hub.inbox.check_rate(session.user_id)
    except InvalidMessageError as exc:
        raise ApiError(422, "validation_error", f"field 'body': {exc}") from exc
    except RateLimitedError as exc:
        response = error_response(429, "rate_limited", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    return await _send(request, to, body, sender=session.user_id, kind="direct")


async def my_messages(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    q = request.query_params
    limit_raw = q.get("limit", "50")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_PAGE:
        raise ApiError(422, "validation_error", f"'limit' must be an integer 1..{MAX_PAGE}")
    unread = q.get("unread", "false").lower()
    if unread not in ("true", "false", "1", "0"):
        raise ApiError(422, "validation_error", "'unread' must be true or false")
    cursor = q.get("cursor") or None
    if cursor is not None and not valid_id(cursor):
        raise ApiError(422, "validation_error", "'cursor' must be a message id")
    page = await _hub(request).inbox.page(
        session.user_id, cursor=cursor, limit=int(limit_raw), unread=unread in ("true", "1")
    )
    return ok(page)


async def mark_read(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    payload = await _payload(request)
    up_to = payload.get("up_to")
    ids = payload.get("ids", [])
    errors = []
    if up_to is not None and (not isinstance(up_to, str) or not valid_id(up_to)):
        errors.append("field 'up_to' must be a message id")
    if not isinstance(ids, list) or len(ids) > MAX_PAGE:
        errors.append(f"field 'ids' must be a list of at most {MAX_PAGE} message ids")
    elif not all(isinstance(i, str) and valid_id(i) for i in ids):
        errors.append("field 'ids' must contain only message ids")
    if up_to is None and not ids and not errors:
        errors.append("give 'up_to' or 'ids'")
    if errors:
        raise ApiError(422, "validation_error", "; ".join(errors))
    result = await _hub(request).inbox.mark_read(session.user_id, up_to=up_to, ids=ids)
    return ok(result)


def _event(message: MessageView) -> str:
    return f"id: {message['id']}\nevent: message\ndata: {json.dumps(message)}\n\n"


async def stream(request: Request) -> Response:
    session = await current_session(request)
    user_id = session.user_id
    assert user_id is not None
    hub = _hub(request)
    notifier: InboxNotifier = request.app.state.notifier
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if last is not None and not valid_id(last):
        raise ApiError(422, "validation_error", "Last-Event-ID must be a message id")
    if last is None:
        last = await hub.inbox.read_cursor(user_id)
    keepalive = _settings(request).messages.stream_keepalive
    cookie = request.cookies.get(_settings(request).session.cookie_name)

    async def events() -> AsyncIterator[str]:
        after = last
        async with notifier.subscription(user_id) as wakeup:
            yield "retry: 1000\n\n"
            while True:
                wakeup.clear()
                messages = await hub.inbox.after(user_id, after, limit=STREAM_BATCH)
                for m in messages:
                    yield _event(m.view())
                    after = m.id
                if len(messages) == STREAM_BATCH:
                    continue
                try:
                    await asyncio.wait_for(wakeup.wait(), keepalive)
                except asyncio.TimeoutError:
                    if await hub.open(cookie, touch=False) is None:
                        return  # logged out or revoked: end the stream
                    yield ": keepalive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


routes = [
    Route("/api/messages", user_send, methods=["POST"]),
    Route("/api/messages/broadcast", broadcast, methods=["POST"]),
    Route("/api/users/{user_id}/messages", admin_send, methods=["POST"]),
    Route("/api/me/messages", my_messages, methods=["GET"]),
    Route("/api/me/messages/read", mark_read, methods=["POST"]),
    Route("/api/me/messages/stream", stream, methods=["GET"]),
]
