"""The web page and HTTP API: a FastAPI app (``app.create_app``) served by uvicorn.

Modules: ``app`` (the one place settings are read), ``auth`` (token login, Host allow-list,
content types), ``state`` (connections shared by requests), ``api_*`` (JSON routers),
``pages`` (HTML), ``live`` (server-sent events from Postgres NOTIFY), ``thumbnails``.
"""
