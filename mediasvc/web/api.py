"""The REST API, /api/v1 (JSON). FastAPI validates every input against the declarations
below and describes them in /api/v1/openapi.json, so the description cannot drift from the
code. Reads need a viewer, actions an operator (auth.py); errors are JSON ``{"error": ...}``
with ``"field"`` naming the input for a 400.

No patient identifier ever travels in a URL: studies and series are named by opaque keys, and
searches by name, Patient ID or accession number are POSTs with a JSON body.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mediasvc.jobqueue import State
from mediasvc.web import actions, data
from mediasvc.web.auth import User, api_user, check_csrf, config

router = APIRouter(prefix="/api/v1")

Priority = Literal["HIGH", "MED", "LOW"]
Kind = Literal["export", "print", "import"]
Text = Annotated[str, Field(max_length=64, pattern=r"^[^\x00-\x1f]*$")]


def viewer(request: Request) -> User:
    return api_user(request, "viewer")


def operator(request: Request) -> User:
    return api_user(request, "operator")


async def operator_action(request: Request, user: Annotated[User, Depends(operator)]) -> User:
    await check_csrf(request)
    return user


Viewer = Annotated[User, Depends(viewer)]
Operator = Annotated[User, Depends(operator_action)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(Strict):
    """Every criterion given must match; empty ones are ignored."""

    name: Text = Field("", description="words of the Patient's Name, any case")
    patient_id: Text = Field("", description="the Patient ID or its beginning")
    accession: Annotated[str, Field(max_length=16, pattern=r"^[^\x00-\x1f]*$")] = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    offset: int = Field(0, ge=0, le=1_000_000)
    limit: int = Field(50, ge=1, le=200)


class ImportRequest(Strict):
    source: str = Field(..., min_length=1, max_length=4096,
                        description="a configured device or an ISO image / folder under "
                        "[web] import_folders")
    label: Text | None = None
    priority: Priority = "MED"


class PrintRequest(Strict):
    study: int = Field(..., ge=1, description="the study's key (from the store endpoints)")
    printer: Text
    layout: Text
    series: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, max_length=1000, description="keys of the series to print (default: all)")
    copies: int = Field(1, ge=1, le=99)
    priority: Priority = "MED"


def criteria(body: SearchRequest) -> dict[str, str]:
    return {"name": body.name, "patient_id": body.patient_id, "accession": body.accession,
            "date_from": body.date_from.strftime("%Y%m%d") if body.date_from else "",
            "date_to": body.date_to.strftime("%Y%m%d") if body.date_to else ""}


# -- jobs -------------------------------------------------------------------------------------

@router.get("/status", summary="the service and its queue counts")
def status(request: Request, _u: Viewer) -> dict[str, Any]:
    q = request.app.state.queue
    return {"service": data.service_status(config(request)), "counts": q.counts()}


@router.get("/jobs", summary="jobs, newest first, one page (filters: state, kind)")
def list_jobs(request: Request, _u: Viewer,
              state: Annotated[list[State] | None, Query()] = None,
              kind: Kind | None = None,
              before: Annotated[int | None, Query(ge=1, description="ids below this")] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return data.queue_view(config(request), request.app.state.queue,
                           states=[s.value for s in state] if state else None, kind=kind,
                           before=before, limit=limit)


@router.get("/jobs/{job_id}", summary="one job with its report (every problem file named)")
def get_job(request: Request, job_id: int, _u: Viewer) -> dict[str, Any]:
    return data.job_detail(config(request), request.app.state.queue, job_id)


@router.post("/jobs/{job_id}/cancel", summary="cancel a waiting job, or stop a running one")
def cancel_job(request: Request, job_id: int, _u: Operator) -> dict[str, Any]:
    job = actions.cancel(config(request), request.app.state.queue, job_id)
    return data.job_summary(config(request), job)


@router.post("/jobs/{job_id}/retry", summary="requeue a failed, cancelled or retrying job")
def retry_job(request: Request, job_id: int, _u: Operator) -> dict[str, Any]:
    job = actions.retry(config(request), request.app.state.queue, job_id)
    return data.job_summary(config(request), job)


@router.post("/import", status_code=202, summary="import a medium into the store (a job)")
def import_medium(request: Request, body: ImportRequest, _u: Operator) -> dict[str, Any]:
    job = actions.import_medium(config(request), request.app.state.queue, body.source,
                                body.label, body.priority)
    return data.job_summary(config(request), job)


@router.get("/import/sources", summary="the devices and folders an import may read")
def import_sources(request: Request, _u: Viewer) -> dict[str, Any]:
    return data.import_sources(config(request))


@router.post("/print", status_code=202, summary="print a stored study on a film layout (a job)")
def print_study(request: Request, body: PrintRequest, _u: Operator) -> dict[str, Any]:
    job = actions.print_study(config(request), request.app.state.queue, body.study, body.printer,
                              body.layout, body.series, body.copies, body.priority)
    return data.job_summary(config(request), job)


# -- folders and devices ----------------------------------------------------------------------

@router.get("/drops", summary="drop folders and what waits in them")
def drops(request: Request, _u: Viewer) -> list[dict[str, Any]]:
    return data.drop_folders(config(request))


@router.get("/ingress", summary="network ingress: routes, studies in their quiet period, "
            "MCM requests, forward status per study")
def ingress(request: Request, _u: Viewer) -> dict[str, Any]:
    return data.ingress(config(request))


@router.get("/burners", summary="drives, publishers and folders with their state")
def burners(request: Request, _u: Viewer) -> list[dict[str, Any]]:
    return data.burners(config(request), request.app.state.queue)


@router.get("/printers", summary="printers with their last status (N-GET, N-EVENT-REPORT)")
def printers(request: Request, _u: Viewer) -> list[dict[str, Any]]:
    return data.printers(config(request), request.app.state.queue)


@router.get("/layouts", summary="the film layouts a print may use")
def layouts(_u: Viewer) -> list[dict[str, Any]]:
    return data.layouts()


# -- the store --------------------------------------------------------------------------------

@router.get("/store/patients", summary="patients with their number of studies, one page")
def patients(request: Request, _u: Viewer, offset: Annotated[int, Query(ge=0)] = 0,
             limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return data.patients(config(request), limit, offset)


@router.get("/store/studies", summary="studies with their counts, newest first, one page")
def studies(request: Request, _u: Viewer, offset: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return data.find_studies(config(request), {}, limit, offset)


@router.post("/store/search", summary="studies by name, Patient ID, date, accession number")
def search(request: Request, body: SearchRequest, _u: Viewer) -> dict[str, Any]:
    # A POST: the criteria identify a patient and must not appear in a URL (access logs).
    return data.find_studies(config(request), criteria(body), body.limit, body.offset)


@router.get("/store/studies/{key}", summary="one study with its series and their counts")
def study(request: Request, key: int, _u: Viewer) -> dict[str, Any]:
    return data.study_detail(config(request), key)


@router.get("/store/studies/{key}/mds", summary="the study's minimum data set, JSON or CSV",
            response_model=None)
def study_mds(request: Request, key: int, _u: Viewer,
              format: Literal["json", "csv"] = "json",
              lang: Annotated[str, Query(pattern=r"^[a-z]{2}$")] = "en") -> Response:
    try:
        report = data.mds_report(config(request), key, lang)
    except ValueError as exc:
        raise actions.Invalid("lang", str(exc)) from exc
    if format == "csv":
        return Response(data.mds_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="mds-study-{key}.csv"'})
    return JSONResponse(report)


@router.get("/store/series/{key}/thumbnail", summary="a PNG of the series' middle image",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def thumbnail(request: Request, key: int, _u: Viewer) -> Response:
    png = data.thumbnail(config(request), key)
    if png is None:
        raise data.NotFound(f"series {key} has no image to show")
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=86400"})
