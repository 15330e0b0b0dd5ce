"""The seed's demo views on Django sessions stored by SessionHub."""

import hmac
import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from sessionhub.integrations.django import current_user_id, get_hub, login_user, logout_user

# A demo user table: never keep real passwords like this.
USERS = {"alice": "alice-pw", "bob": "bob-pw"}
print("Demo users (username / password):")
for _name, _password in USERS.items():
    print(f"  {_name} / {_password}")


def envelope(data: Any, status: int = 200) -> JsonResponse:
    """The seed's success envelope."""
    return JsonResponse({"success": True, "data": data}, status=status)


@csrf_exempt
@require_POST
def login(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    username, password = str(body.get("username", "")), str(body.get("password", ""))
    expected = USERS.get(username)
    if expected is None or not hmac.compare_digest(expected, password):
        error = {"code": "invalid_credentials", "message": "wrong username or password"}
        return JsonResponse({"success": False, "error": error}, status=401)
    # With django.contrib.auth, django.contrib.auth.login(request, user) does the same.
    login_user(request, username)
    return envelope({"user_id": username})


@csrf_exempt
@require_POST
def logout(request: HttpRequest) -> JsonResponse:
    was = current_user_id(request)
    logout_user(request)
    return envelope({"logged_out": was is not None})


@require_GET
def visits(request: HttpRequest) -> JsonResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"visits": request.session["visits"]})


@require_GET
def stats(request: HttpRequest) -> JsonResponse:
    data = get_hub().stats()
    return envelope({k: data[k] for k in ("total_sessions", "redis_available")})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    data = get_hub().health()
    body = {k: data[k] for k in ("status", "message", "session_count")}
    return envelope(body, 200 if data["status"] == "healthy" else 503)
