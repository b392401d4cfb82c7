"""A print request from start to end: layout + overrides, capability check, rendering, sending.

This is what the CLI (`mediasvc print`) and the print queue (and so `mediasvc serve`) call::

    request = PrintRequest(files=("a.dcm", "b.dcm"), layout="ct-4x5", copies=2)
    result = print_request(request, printer)        # PrintResult, or raises

``print_request`` refuses what the printer cannot take before any association (UsageError
naming the attribute), raises InputError for an unreadable image, PeerError (``transient``) for
a printer that is down or busy and PrintError for a printer that refused the film.
``skip_films`` and ``on_film`` let a queue resume a job whose first films were printed already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mediasvc.errors import UsageError
from mediasvc.printing.layouts import FilmLayout, default_layout, film_layout
from mediasvc.printing.printers import Printer, check_request
from mediasvc.printing.render import Film, RenderOptions, load_images, render_films
from mediasvc.printing.scu import PrintResult, print_films


@dataclass(frozen=True)
class PrintRequest:
    files: tuple[str, ...]
    layout: str | None = None  # a layout name of profiles/film/, or a TOML path
    format: str | None = None  # 'STANDARD\\C,R' ...: overrides the layout's
    film_size: str | None = None
    copies: int | None = None
    priority: str | None = None
    color: bool = False
    window: tuple[float, float] | None = None  # (center, width) for every image
    text: str = ""  # free text for the annotation's {text}
    label: str = ""  # Film Session Label

    def to_payload(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = list(self.files)
        d["window"] = list(self.window) if self.window else None
        return d

    @classmethod
    def from_payload(cls, d: Mapping[str, Any]) -> PrintRequest:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in d.items() if k in known}
        values["files"] = tuple(values.get("files", ()))
        if values.get("window"):
            values["window"] = (float(values["window"][0]), float(values["window"][1]))
        return cls(**values)

    def resolve_layout(self, directory: Path | None = None) -> FilmLayout:
        if self.layout is None and self.format is None:
            raise UsageError("give a film layout (--layout NAME) or an image display format "
                             "(--format 'STANDARD\\C,R')")
        base = film_layout(self.layout, directory) if self.layout else \
            default_layout(str(self.format))
        return base.with_overrides(display_format=self.format if self.layout else None,
                                   film_size=self.film_size, copies=self.copies,
                                   priority=self.priority)


@dataclass
class PreparedJob:
    layout: FilmLayout
    options: RenderOptions
    films: list[Film]


def prepare(request: PrintRequest, printer: Printer,
            layouts_dir: Path | None = None) -> PreparedJob:
    """Check the request against the printer, then render every film (no network)."""
    if not request.files:
        raise UsageError("nothing to print: no files given")
    layout = request.resolve_layout(layouts_dir)
    check_request(printer, layout, color=request.color)
    opts = RenderOptions.from_layout(layout, color=request.color, window=request.window,
                                     text=request.text)
    images = load_images(Path(f) for f in request.files)
    films = render_films(images, layout, printer.film_matrix(layout.film_size,
                                                             layout.orientation), opts)
    return PreparedJob(layout, opts, films)


def print_request(request: PrintRequest, printer: Printer, *, skip_films: int = 0,
                  on_film: Callable[[int], None] | None = None,
                  prepared: PreparedJob | None = None,
                  layouts_dir: Path | None = None) -> PrintResult:
    """Prepare (unless given) and print; ``on_film(n)`` after film n (1-based) is printed."""
    job = prepared or prepare(request, printer, layouts_dir)
    films = job.films[skip_films:]
    if not films:
        return PrintResult(printer=printer.name)
    counter = {"n": skip_films}

    def progress(_message: str) -> None:
        counter["n"] += 1
        if on_film is not None:
            on_film(counter["n"])

    return print_films(printer, job.layout, films, color=request.color,
                       label=request.label, progress=progress)
