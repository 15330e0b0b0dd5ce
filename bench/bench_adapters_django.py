"""URLconf of the Django app of adapter_apps.py."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path


def handle(request: HttpRequest, action: str) -> JsonResponse:
    """The benchmark's views on Django's session API (a fresh dict for the floor, which has no
    session middleware)."""
    from adapter_apps import floor_session, view

    session = request.session if hasattr(request, "session") else floor_session()
    return JsonResponse(view(session, action))


urlpatterns: list[Any] = [path("<str:action>", handle)]
