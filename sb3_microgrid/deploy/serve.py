"""The site controller over HTTP (FastAPI): ``POST /decide``, ``GET /health``, ``GET /manifest``.

A request that does not match the measurement schema (a wrong type, a missing field, an unknown one, JSON that
does not parse, is nested too deeply or is not UTF-8) gets HTTP 422 with ``{"errors": [{"field", "message"}]}``. A
well-formed request always gets 200 and setpoints: bad values, and failures of the policy, give the fallback with the
problems named (:class:`~sb3_microgrid.deploy.SiteController` never raises), so the API never answers 500.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .controller import SiteController, utc_now
from .schema import Decision, Measurements


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location in the body as the controller names fields: ``history[3].load_kw``."""
    out = ""
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "body"


def create_app(controller: SiteController) -> FastAPI:
    """The HTTP API of ``controller``.

    :param controller: decides each request
    """
    app = FastAPI(title="sb3-microgrid site controller", summary="Setpoints in kW from a site's measurements (docs/deploy.md)")

    @app.exception_handler(RequestValidationError)
    async def schema_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # JSON that does not parse is located by its character position: the whole body is at fault.
        errors = [{"field": "body" if e["type"] == "json_invalid" else field_path(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def unreadable_body(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400, chained to the reader's error, for a body Python's JSON reader fails on other than by a
        # decode error (nested too deeply, not UTF-8): as for any JSON that does not parse, the whole body is at fault.
        # Other HTTP errors (404, 405) keep FastAPI's answer.
        cause = exc.__cause__
        if exc.status_code != 400 or cause is None:
            return await http_exception_handler(request, exc)
        return JSONResponse(status_code=422, content={"errors": [{"field": "body", "message": f"{exc.detail}: {type(cause).__name__}: {cause}"}]})

    @app.post("/decide", response_model=Decision)
    async def decide(measurements: Measurements) -> Decision:
        """Setpoints for the step the measurements describe."""
        return controller.decide(measurements)

    # The manifest's values are written as read (json, as the manifest file is): pydantic's serializer refuses nesting
    # that the reader takes, which would answer 500.
    @app.get("/health")
    async def health() -> JSONResponse:
        """Up, which policy, and how many decisions were the fallback's."""
        return JSONResponse({"status": "ok", "algorithm": controller.manifest.get("algorithm"), "decisions": controller.decisions, "fallbacks": controller.fallbacks})

    @app.get("/manifest")
    async def manifest() -> JSONResponse:
        """The export's manifest."""
        return JSONResponse(controller.manifest)

    return app


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, max_age_s: float | None = None, replay: bool = False) -> None:
    """Serve an export folder's policy until interrupted.

    :param path: the export folder
    :param host: the address to listen on
    :param port: the port
    :param max_age_s: how far a request's timestamp may lie from the server's clock (s); ``None``: one step
    :param replay: the requests replay a recorded or simulated day: no staleness check
    :raises ~sb3_microgrid.export.ManifestError: for a folder the controller cannot run
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    controller = SiteController.from_export(path, max_age_s=max_age_s, clock=None if replay else utc_now)
    uvicorn.run(create_app(controller), host=host, port=port, log_level="info")
