"""Routes of the demo (the seed's API)."""

from django.urls import path

from . import views

urlpatterns = [
    path("login", views.login),
    path("logout", views.logout),
    path("visits", views.visits),
    path("api/session/stats", views.stats),
    path("api/health/redis", views.health),
]
