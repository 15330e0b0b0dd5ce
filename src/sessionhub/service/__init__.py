"""The HTTP service: an ASGI app (Starlette) over :class:`~sessionhub.hub.AsyncSessionHub`."""
