"""The web console of `mediasvc serve` (docs/web.md): a REST API under /api/v1 and
server-rendered pages. Runs in a child process of the service (service/console.py).

    auth.py     users, password hashes, sessions, roles, CSRF
    data.py     what is shown, read from the queue, the reports and the store
    actions.py  cancel, retry, import, print: through the service's own code paths
    api.py      /api/v1 (JSON, OpenAPI)
    pages.py    the HTML pages (templates/, static/)
    app.py      the application and its server (FastAPI + uvicorn)
"""
