"""The web UI: `luodi ui` shows the store's runs, models, reports and studies in a browser (docs/ui.md).

    app.py      create_app: the pages (PAGES), the guard, the templates; how to add a page
    auth.py     API keys as `luodi serve` reads them, the sign-in cookie, same-origin and CSRF checks
    state.py    UI: what the pages share (store, templates, auth); rendering, forms, not-found pages
    queries.py  the paginated, filtered, sorted runs query (indexed; SQLite and PostgreSQL)
    charts.py   line charts as inline SVG, drawn on the server
    runs.py     /runs, /runs/{id} (and its report), /compare, /api/runs
    models.py   /models, /models/{name} (promote, roll back), /models/{name}/versions/{v} (try predictions)
    server.py   `luodi ui`: one uvicorn process on the serving stack (bind, drain)
"""
