"""The staff console: server-rendered pages on loyalty's port, for the shop's people.

``router`` has every page; ``install`` adds what a page answers when nobody is signed
in, when the person may not do something, or when a form is out of date.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from . import case_pages, customer_pages, metrics_page, pages, settings_page
from .access import BadForm, Forbidden, SignInNeeded
from .parts import ConsoleParts
from .rendering import page, static_response

router = APIRouter(include_in_schema=False)
router.include_router(pages.router)
router.include_router(case_pages.router)
router.include_router(customer_pages.router)
router.include_router(metrics_page.router)
router.include_router(settings_page.router)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    return static_response(name)


@router.get("/favicon.ico")
async def favicon() -> Response:
    return RedirectResponse("/static/icon.svg", status_code=301)


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows this header with a full page load
        return Response(status_code=204, headers={"HX-Redirect": "/sign-in"})
    return RedirectResponse("/sign-in", status_code=303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, Forbidden) else "Not yours to see."
    return page(
        "problem.html",
        403,
        title="Not for your role",
        message=message,
        signed=None,
        section="",
        back="/",
        back_words="Back to today",
    )


async def _bad_form(request: Request, exc: Exception) -> Response:
    return page(
        "problem.html",
        400,
        title="This form was out of date",
        message="Nothing was saved. Go back, reload the page and try again.",
        signed=None,
        section="",
        back="/",
        back_words="Back to today",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadForm, _bad_form)


__all__ = ["ConsoleParts", "install", "router"]
