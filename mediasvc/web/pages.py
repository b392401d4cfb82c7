"""The HTML pages: server-rendered (Jinja2 templates), a little plain JS for live refresh.

Pages: / (the queue), /jobs/N (a job and its report), /store (search), /study/K (series
thumbnails, the MDS), /devices (printers, burners, drop folders, ingress, import). Actions are
HTML forms that POST with the session's CSRF token and answer with a redirect (303) to the
job's page. Searches are POSTs: a patient's name or ID never appears in a URL.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from mediasvc.jobqueue import State
from mediasvc.web import actions, data
from mediasvc.web.auth import (
    User,
    check_csrf,
    config,
    csrf_token,
    current_user,
    login,
    need_operator,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
KINDS = ("export", "print", "import")
STATES = tuple(s.value for s in State)


def _when(t: float | None) -> str:
    return "" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _da(value: str) -> str:
    """DICOM DA (YYYYMMDD) as YYYY-MM-DD."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() \
        else value


templates.env.filters["when"] = _when
templates.env.filters["da"] = _da
templates.env.filters["pn"] = lambda v: str(v or "").replace("^", " ").strip()


def page_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


async def page_operator(request: Request, user: Annotated[User, Depends(page_user)]) -> User:
    need_operator(user)
    await check_csrf(request)
    return user


PageUser = Annotated[User, Depends(page_user)]
PageOperator = Annotated[User, Depends(page_operator)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.update(user=current_user(request), csrf=csrf_token(request), path=request.url.path)
    return templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, message=message)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- signing in -------------------------------------------------------------------------------

def _local(next_url: str) -> str:
    """Only a path of this site (no open redirect to another one)."""
    return next_url if next_url.startswith("/") and not next_url.startswith("//") else "/"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=_local(next), failed=False)


@router.post("/login", response_model=None)
async def login_post(request: Request, username: Annotated[str, Form(max_length=64)],
                     password: Annotated[str, Form(max_length=256)],
                     next: Annotated[str, Form(max_length=512)] = "/") -> Response:
    await check_csrf(request)
    user = request.app.state.users.check(username, password)
    if user is None:
        return render(request, "login.html", status=401, next=_local(next), failed=True)
    login(request, user)
    return _redirect(_local(next))


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    await check_csrf(request)
    request.session.clear()
    return _redirect("/login")


# -- the queue and the jobs -------------------------------------------------------------------

def _queue_context(request: Request, state: str | None, kind: str | None,
                   before: int | None) -> dict[str, Any]:
    view = data.queue_view(config(request), request.app.state.queue,
                           states=[state] if state in STATES else None,
                           kind=kind if kind in KINDS else None, before=before, limit=50)
    query = "&".join(f"{k}={v}" for k, v in (("state", state), ("kind", kind)) if v)
    return {"view": view, "state": state, "kind": kind, "query": query, "before": before,
            "states": STATES, "kinds": KINDS}


@router.get("/")
def queue_page(request: Request, _u: PageUser, state: str | None = None,
               kind: str | None = None, before: int | None = None) -> HTMLResponse:
    return render(request, "queue.html", **_queue_context(request, state, kind, before))


@router.get("/partials/queue")
def queue_partial(request: Request, _u: PageUser, state: str | None = None,
                  kind: str | None = None, before: int | None = None) -> HTMLResponse:
    return render(request, "queue_live.html", **_queue_context(request, state, kind, before))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: int, _u: PageUser) -> HTMLResponse:
    return render(request, "job.html",
                  d=data.job_detail(config(request), request.app.state.queue, job_id))


@router.get("/partials/jobs/{job_id}")
def job_partial(request: Request, job_id: int, _u: PageUser) -> HTMLResponse:
    return render(request, "job_live.html",
                  d=data.job_detail(config(request), request.app.state.queue, job_id))


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: int, _u: PageOperator) -> RedirectResponse:
    job = actions.cancel(config(request), request.app.state.queue, job_id)
    return _redirect(f"/jobs/{job.id}")


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: int, _u: PageOperator) -> RedirectResponse:
    job = actions.retry(config(request), request.app.state.queue, job_id)
    return _redirect(f"/jobs/{job.id}")


# -- the store --------------------------------------------------------------------------------

@router.get("/store")
def store_page(request: Request, _u: PageUser, offset: int = 0) -> HTMLResponse:
    found = data.find_studies(config(request), {}, 50, max(offset, 0))
    return render(request, "store.html", found=found, form={}, searched=False)


@router.post("/store")
def store_search(request: Request, _u: PageUser,
                 name: Annotated[str, Form()] = "", patient_id: Annotated[str, Form()] = "",
                 accession: Annotated[str, Form()] = "", date_from: Annotated[str, Form()] = "",
                 date_to: Annotated[str, Form()] = "",
                 offset: Annotated[int, Form()] = 0) -> HTMLResponse:
    form = {"name": name, "patient_id": patient_id, "accession": accession,
            "date_from": date_from, "date_to": date_to}
    try:  # the API's own validation, so that both refuse the same inputs
        body = _search_request(form, offset)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ()))
        return render(request, "store.html", status=400, found=None, form=form, searched=True,
                      error=f"{field}: {err.get('msg')}")
    found = data.find_studies(config(request), _criteria(body), body.limit, body.offset)
    return render(request, "store.html", found=found, form=form, searched=True)


def _search_request(form: dict[str, str], offset: int) -> Any:
    from mediasvc.web.api import SearchRequest

    values: dict[str, Any] = {k: v.strip() for k, v in form.items() if v.strip()}
    return SearchRequest(**values, offset=offset)


def _criteria(body: Any) -> dict[str, str]:
    from mediasvc.web.api import criteria

    return criteria(body)


@router.get("/study/{key}")
def study_page(request: Request, key: int, _u: PageUser) -> HTMLResponse:
    cfg = config(request)
    detail = data.study_detail(cfg, key)
    mds = data.mds_report(cfg, key)
    return render(request, "study.html", d=detail, mds=mds[0] if mds else None,
                  printers=sorted(cfg.printers), layouts=data.layouts(),
                  default_layout=cfg.print_layout)


@router.post("/study/{key}/print")
def print_study(request: Request, key: int, _u: PageOperator,
                printer: Annotated[str, Form(max_length=64)],
                layout: Annotated[str, Form(max_length=64)],
                copies: Annotated[int, Form(ge=1, le=99)] = 1,
                series: Annotated[list[int] | None, Form()] = None) -> RedirectResponse:
    job = actions.print_study(config(request), request.app.state.queue, key, printer, layout,
                              series or None, copies, "MED")
    return _redirect(f"/jobs/{job.id}")


# -- devices ----------------------------------------------------------------------------------

@router.get("/devices")
def devices_page(request: Request, _u: PageUser) -> HTMLResponse:
    cfg = config(request)
    q = request.app.state.queue
    return render(request, "devices.html", printers=data.printers(cfg, q),
                  burners=data.burners(cfg, q), drops=data.drop_folders(cfg),
                  ingress=data.ingress(cfg), sources=data.import_sources(cfg))


@router.post("/import")
def import_medium(request: Request, _u: PageOperator,
                  source: Annotated[str, Form(max_length=4096)] = "",
                  path: Annotated[str, Form(max_length=4096)] = "",
                  label: Annotated[str, Form(max_length=64)] = "") -> RedirectResponse:
    chosen = path.strip() or source.strip()
    if not chosen:
        raise actions.Invalid("source", "choose a medium or type its path")
    job = actions.import_medium(config(request), request.app.state.queue, chosen,
                                label.strip() or None, "MED")
    return _redirect(f"/jobs/{job.id}")
