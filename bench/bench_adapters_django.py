"""URLconf of the Django side of bench_adapters.py."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path


def view(request: HttpRequest, action: str) -> JsonResponse:
    """The benchmark's views on Django's session API."""
    from bench_adapters import _view

    return JsonResponse(_view(request.session, action))


urlpatterns: list[Any] = [path("<str:action>", view)]
