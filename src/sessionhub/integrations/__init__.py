"""Framework adapters: one module per framework, each importing its framework itself.

``sessionhub.integrations.flask`` (Flask), ``sessionhub.integrations.asgi`` (Starlette, FastAPI
and any ASGI app) and ``sessionhub.integrations.django`` (a Django ``SESSION_ENGINE``) share the
framework-free request session in :mod:`sessionhub.integrations.base`. Importing this package
imports no framework.
"""
