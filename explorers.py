"""The browser explorers, served with no CDN: Swagger UI (/docs), ReDoc (/redoc) and the page
GraphiQL runs in (/graphql, rendered by schema/http.py with `graphiql_html`).

Their scripts and styles are pinned copies of npm packages under static/ (see static/README.md),
mounted at /static: on a machine with no internet — where the embedded model is the point —
every explorer still loads.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse
from strawberry.http.ides import get_graphql_ide_html

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
SWAGGER = f"{STATIC_PATH}/swagger-ui-dist@5.35.0"
REDOC = f"{STATIC_PATH}/redoc@2.5.2"
CDN = "https://unpkg.com/"


def graphiql_html(root_path: str = "") -> str:
    """Strawberry's GraphiQL page with its unpkg URLs pointed at our copies (static/graphiql/
    mirrors unpkg's paths). The `integrity` attributes stay, so the browser checks that each
    file is exactly the one Strawberry pins."""
    return get_graphql_ide_html(graphql_ide="graphiql").replace(
        CDN, f"{root_path}{STATIC_PATH}/graphiql/")


def install(app: FastAPI) -> None:
    """Mount static/ and the /docs and /redoc pages. Create the app with docs_url=None and
    redoc_url=None (FastAPI's own pages load their assets from a CDN)."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            # No badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{REDOC}/bundles/redoc.standalone.js",
            redoc_favicon_url=f"{root}{SWAGGER}/favicon-32x32.png",
            with_google_fonts=False,
        )
