"""Messages: send (user, admin, broadcast), list, mark read, and the live event stream (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..exceptions import InvalidMessageError, RateLimitedError
from ..inbox import InboxNotifier
from ..jsontext import dumps
from ..views import MessageView
from .auth import PasswordChecker
from .bodies import message_id_header, read_body, read_query
from .counts import Counts
from .errors import ApiError, ok, too_many
from .models import MAX_USER_ID, MarkReadBody, MessageBody, MessagesQuery, SendBody, StreamQuery
from .routes import _hub, _settings, current_session
from .routes_users import admin_only

STREAM_BATCH = 100


def _invalid_body(exc: InvalidMessageError) -> ApiError:
    return ApiError(422, "validation_error", f"field 'body': {exc}")


async def _send(request: Request, to: str, body: Any, **kwargs: Any) -> Response:
    try:
        message = await _hub(request).inbox.send(to, body, **kwargs)
    except InvalidMessageError as exc:
        raise _invalid_body(exc) from exc
    _counts(request).sent(1)
    return ok(message, status=201)


def _counts(request: Request) -> Counts:
    counts: Counts = request.app.state.counts
    return counts


async def admin_send(request: Request) -> Response:
    admin_only(request)
    to = request.path_params["user_id"]
    if not 1 <= len(to) <= MAX_USER_ID:
        message = f"path parameter 'user_id' must be 1 to {MAX_USER_ID} characters long"
        raise ApiError(422, "validation_error", message)
    return await _send(request, to, (await read_body(request, MessageBody)).body, kind="admin")


async def broadcast(request: Request) -> Response:
    admin_only(request)
    body = (await read_body(request, MessageBody)).body
    try:
        result = await _hub(request).inbox.broadcast(body)
    except InvalidMessageError as exc:
        raise _invalid_body(exc) from exc
    _counts(request).sent(result["recipients"])
    return ok(result)


async def user_send(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    payload = await read_body(request, SendBody)
    to, body = payload.to, payload.body
    # The same user table as login's, so a user added since the start can be written to.
    # A stat per send; the file is parsed again only when it changed.
    passwords: PasswordChecker = request.app.state.passwords
    if not await run_in_threadpool(passwords.knows, to):  # may parse the users file again
        raise ApiError(404, "user_not_found", f"no such user: {to!r}")
    hub = _hub(request)
    try:
        hub.features.inbox.check_body(body)
        await hub.inbox.check_rate(session.user_id)
    except InvalidMessageError as exc:
        raise _invalid_body(exc) from exc
    except RateLimitedError as exc:
        return too_many("rate_limited", exc)
    return await _send(request, to, body, sender=session.user_id, kind="direct")


async def my_messages(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    q = read_query(request, MessagesQuery)
    page = await _hub(request).inbox.page(
        session.user_id, cursor=q.cursor, limit=q.limit, unread=q.unread
    )
    return ok(page)


async def mark_read(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    body = await read_body(request, MarkReadBody)
    result = await _hub(request).inbox.mark_read(session.user_id, up_to=body.up_to, ids=body.ids)
    return ok(result)


def sse_frame(*fields: tuple[str, str]) -> str:
    """One Server-Sent Events block: a ``name: value`` line per field, then the blank line that
    ends the block; the name ``""`` makes a comment. No value holds a line break (JSON text from
    jsontext has none, ids are digits), so each is one line.

    Not sse-starlette: its pings and disconnect watching would duplicate the keepalive below,
    which also ends the stream of a revoked session; a dependency for this function is not worth it.
    """
    return "".join(f"{name}: {value}\n" for name, value in fields) + "\n"


def _event(message: MessageView) -> str:
    return sse_frame(("id", message["id"]), ("event", "message"), ("data", dumps(message).decode()))


async def stream(request: Request) -> Response:
    session = await current_session(request)
    user_id = session.user_id
    assert user_id is not None
    hub = _hub(request)
    notifier: InboxNotifier = request.app.state.notifier
    # Checked before the stream starts: a bad id answers 400 rather than breaking the stream.
    last = message_id_header(request, "Last-Event-ID")
    if last is None:
        last = read_query(request, StreamQuery).last_event_id
    if last is None:
        last = await hub.inbox.read_cursor(user_id)
    keepalive = _settings(request).messages.stream_keepalive
    cookie = request.cookies.get(_settings(request).session.cookie_name)
    counts = _counts(request)

    async def events() -> AsyncIterator[str]:
        after = last
        async with notifier.subscription(user_id) as wakeup:
            yield sse_frame(("retry", "1000"))
            while True:
                wakeup.clear()
                messages = await hub.inbox.after(user_id, after, limit=STREAM_BATCH)
                for m in messages:
                    yield _event(m.view())
                    counts.delivered()
                    after = m.id
                if len(messages) == STREAM_BATCH:
                    continue
                try:
                    await asyncio.wait_for(wakeup.wait(), keepalive)
                except asyncio.TimeoutError:
                    if await hub.open(cookie, touch=False) is None:
                        return  # logged out or revoked: end the stream
                    yield sse_frame(("", "keepalive"))

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
