"""The seed's demo app on FastAPI with SessionHub sessions: ``python examples/fastapi_app.py``.

Redis comes from ``REDIS_URL`` (or ``config.yaml``); the port from ``PORT`` (default 5002:
the service itself is on 5000).
Sessions are async all the way (redis.asyncio) through a pure ASGI middleware. It needs
``pip install 'sessionhub[fastapi]' uvicorn``: the fastapi extra brings no server.
"""

import hmac
import os
from typing import Annotated, Any

import uvicorn
from fastapi import Body, Depends, FastAPI
from fastapi.responses import JSONResponse

from sessionhub.config import load_settings
from sessionhub.hub import AsyncSessionHub
from sessionhub.integrations.asgi import (
    RequestSession,
    SessionMiddleware,
    current_session,
    current_user,
    session_hub,
)

# A demo user table: never keep real passwords like this.
USERS = {"alice": "alice-pw", "bob": "bob-pw"}

Session = Annotated[RequestSession, Depends(current_session)]
Hub = Annotated[AsyncSessionHub, Depends(session_hub)]

app = FastAPI(title="SessionHub demo")
app.add_middleware(SessionMiddleware, settings=load_settings())  # REDIS_URL, SECRET_KEY, ...


def envelope(data: Any, status: int = 200) -> JSONResponse:
    """The seed's success envelope."""
    return JSONResponse({"success": True, "data": data}, status_code=status)


@app.post("/login")
async def login(
    session: Session,
    username: Annotated[str, Body()] = "",
    password: Annotated[str, Body()] = "",
) -> JSONResponse:
    expected = USERS.get(username)
    if expected is None or not hmac.compare_digest(expected, password):
        body = {"code": "invalid_credentials", "message": "wrong username or password"}
        return JSONResponse({"success": False, "error": body}, status_code=401)
    session.login(username)  # new token, bound to the user; the anonymous data is kept
    return envelope({"user_id": username})


@app.post("/logout")
async def logout(session: Session) -> JSONResponse:
    was = session.user_id
    session.logout()
    return envelope({"logged_out": was is not None})


@app.get("/visits")
async def visits(session: Session) -> dict[str, int]:
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}


@app.get("/me")
async def me(user_id: Annotated[str, Depends(current_user)]) -> JSONResponse:
    return envelope({"user_id": user_id})  # 401 without a logged-in session


@app.get("/api/session/stats")
async def stats(hub: Hub) -> JSONResponse:
    data = await hub.stats()
    return envelope({k: data[k] for k in ("total_sessions", "redis_available")})


@app.get("/api/health/redis")
async def health(hub: Hub) -> JSONResponse:
    data = await hub.health()
    body = {k: data[k] for k in ("status", "message", "session_count")}
    return envelope(body, 200 if data["status"] == "healthy" else 503)


if __name__ == "__main__":
    print("Demo users (username / password):")
    for name, password in USERS.items():
        print(f"  {name} / {password}")
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "5002")))
