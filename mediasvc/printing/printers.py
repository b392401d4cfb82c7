"""Printers as data: the ``[printers.NAME]`` tables of the service configuration.

    [printers.dryview]
    ae_title = "DRYVIEW"                 # the Print SCP's AE title (called AE)
    host = "10.1.2.3"
    port = 104
    calling_ae_title = "MEDIASVC"        # optional, default MEDIASVC
    timeout = 30                         # seconds: connection, ACSE and DIMSE
    formats = ["STANDARD\\\\1,1", "STANDARD\\\\2,2", "ROW"]   # a kind alone: any of that kind
    film_sizes = ["14INX17IN", "8INX10IN"]
    media = ["BLUE FILM", "CLEAR FILM"]
    destinations = ["MAGAZINE", "PROCESSOR"]
    dpi = 320                            # or a pixel matrix per film size (portrait, cols x rows):
    pixel_matrix = { "14INX17IN" = [4480, 5440] }
    color = false                        # Basic Color Print Management Meta SOP Class
    presentation_lut = true              # informative: mediasvc applies the shape itself
    bits = [8, 12]                       # 12: 12 bits stored in 16 (PS3.3 C.13.5)
    [printers.dryview.tls]               # optional: Basic TLS Secure Transport (seeds/002 §10.2)
    cert = "/etc/mediasvc/tls/client.pem"
    key = "/etc/mediasvc/tls/client.key"
    ca = "/etc/mediasvc/tls/ca.pem"

An empty capability list means "anything" (the printer decides). The service configuration loader
calls :func:`parse_printers` with the ``printers`` table; the CLI also accepts ``AE@HOST:PORT``.

:func:`check_request` refuses, before any association, what a printer cannot take, naming the
attribute (the DICOM name and tag) and the values the printer takes.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.config import Table
from mediasvc.errors import UsageError
from mediasvc.printing.layouts import (
    FILM_SIZES_MM,
    MEDIA,
    FilmLayout,
    parse_display_format,
)

_AE_RE = r"[ -\[\]-~]{1,16}"  # PS3.5 AE VR: 16 chars of the default repertoire, no backslash
_ADDR_RE = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS association (PS3.15 Basic TLS Secure Transport Connection Profile)."""

    cert: Path | None
    key: Path | None
    ca: Path | None

    def context(self) -> ssl.SSLContext:
        """A client SSLContext: the peer is verified against ``ca``; our cert is sent if set."""
        # The printer's certificate must name the host as configured (DNS name or IP address
        # in its subjectAltName) and chain to ``ca`` (or the system's CAs without one).
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(self.ca) if self.ca else None)
        if self.cert:
            ctx.load_cert_chain(str(self.cert), str(self.key) if self.key else None)
        return ctx


@dataclass(frozen=True)
class Printer:
    name: str
    ae_title: str
    host: str
    port: int
    calling_ae_title: str = "MEDIASVC"
    timeout: float = 30.0
    formats: tuple[str, ...] = ()
    film_sizes: tuple[str, ...] = ()
    media: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    dpi: int = 150
    pixel_matrix: dict[str, tuple[int, int]] = field(default_factory=dict)
    color: bool = False
    presentation_lut: bool = False
    bits: tuple[int, ...] = (8,)
    tls: TlsFiles | None = None

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @property
    def label(self) -> str:
        """How messages name the printer: its name and address."""
        return self.name if self.name == self.address else f"{self.name} ({self.address})"

    def film_matrix(self, film_size: str, orientation: str) -> tuple[int, int]:
        """(width, height) in printer pixels of a whole film in the given orientation."""
        if film_size in self.pixel_matrix:
            w, h = self.pixel_matrix[film_size]
        else:
            w_mm, h_mm = FILM_SIZES_MM[film_size]
            w, h = round(w_mm / 25.4 * self.dpi), round(h_mm / 25.4 * self.dpi)
        return (h, w) if orientation == "LANDSCAPE" else (w, h)


def _format_allowed(allowed: tuple[str, ...], text: str) -> bool:
    kind = text.split("\\", 1)[0]
    return not allowed or text in allowed or kind in allowed


def check_request(printer: Printer, layout: FilmLayout, *, color: bool) -> None:
    """Refuse, before any association, a film the printer cannot take (UsageError naming the
    attribute, its tag and what the printer accepts)."""

    def refuse(attr: str, value: object, accepted: object) -> UsageError:
        return UsageError(f"printer {printer.label} cannot take {attr} "
                          f"{value}: it accepts {accepted}")

    if not _format_allowed(printer.formats, layout.display_format.text):
        raise refuse("Image Display Format (2010,0010)", layout.display_format.text,
                     ", ".join(printer.formats))
    if printer.film_sizes and layout.film_size not in printer.film_sizes:
        raise refuse("Film Size ID (2010,0050)", layout.film_size, ", ".join(printer.film_sizes))
    if printer.media and layout.medium and layout.medium not in printer.media:
        raise refuse("Medium Type (2000,0030)", layout.medium, ", ".join(printer.media))
    if printer.destinations and layout.destination \
            and layout.destination not in printer.destinations:
        raise refuse("Film Destination (2000,0040)", layout.destination,
                     ", ".join(printer.destinations))
    if color and not printer.color:
        raise refuse("Basic Color Print Management Meta SOP Class (1.2.840.10008.5.1.1.18)",
                     "(color)", "grayscale only")
    bits = 8 if color else layout.bits
    if bits not in printer.bits:
        raise refuse("Bits Stored (0028,0101)", bits, " or ".join(str(b) for b in printer.bits))
    if color and layout.bits != 8:
        raise refuse("Bits Stored (0028,0101)", layout.bits,
                     "8 for color (PS3.3 C.13.5.1: Basic Color Image Box is 8 bit)")


PRINTER_KEYS = {"ae_title", "host", "port", "calling_ae_title", "timeout", "formats",
                "film_sizes", "media", "destinations", "dpi", "pixel_matrix", "color",
                "presentation_lut", "bits", "tls"}


def parse_printer(t: Table, name: str) -> Printer:
    t.check_keys(PRINTER_KEYS)
    formats = t.str_list("formats", [])
    for f in formats:
        if f not in ("STANDARD", "ROW", "COL"):
            try:
                parse_display_format(f)
            except ValueError as exc:
                raise t.error("formats", str(exc)) from None
    matrix: dict[str, tuple[int, int]] = {}
    pm = t.table("pixel_matrix")
    for size, value in pm.items():
        if size not in FILM_SIZES_MM:
            raise pm.error(size, f"not a Film Size ID ({', '.join(FILM_SIZES_MM)})")
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) and 16 <= v <= 20000 for v in value)):
            raise pm.error(size, "must be [columns, rows] of the portrait film in pixels")
        matrix[size] = (value[0], value[1])
    bits_value = t.data.get("bits", [8])
    if not isinstance(bits_value, list) or not bits_value \
            or any(b not in (8, 12) or isinstance(b, bool) for b in bits_value):
        raise t.error("bits", "must be a list of 8 and/or 12")
    tls = None
    if "tls" in t:
        tt = t.table("tls")
        tt.check_keys({"cert", "key", "ca"})
        files = {k: Path(tt.str(k)) if k in tt else None for k in ("cert", "key", "ca")}
        for k, p in files.items():
            if p is not None and not p.is_file():
                raise tt.error(k, "no such file")
        if files["key"] and not files["cert"]:
            raise tt.error("key", "a key needs a cert")
        tls = TlsFiles(files["cert"], files["key"], files["ca"])
    return Printer(
        name=name,
        ae_title=t.str("ae_title", pattern=_AE_RE),
        host=t.str("host", pattern=r"[A-Za-z0-9.:\[\]_-]+"),
        port=t.int("port", min=1, max=65535),
        calling_ae_title=t.str("calling_ae_title", "MEDIASVC", pattern=_AE_RE),
        timeout=t.float("timeout", 30.0, min=1, max=3600),
        formats=tuple(formats),
        film_sizes=tuple(t.str_list("film_sizes", [], choices=FILM_SIZES_MM)),
        media=tuple(t.str_list("media", [], choices=MEDIA)),
        destinations=tuple(t.str_list("destinations", [])),
        dpi=t.int("dpi", 150, min=20, max=1200),
        pixel_matrix=matrix,
        color=t.bool("color", False),
        presentation_lut=t.bool("presentation_lut", False),
        bits=tuple(sorted(set(bits_value))),
        tls=tls,
    )


def parse_printers(table: Table) -> dict[str, Printer]:
    """The ``[printers.NAME]`` tables of a configuration: pass the ``printers`` table."""
    printers: dict[str, Printer] = {}
    for name in table.data:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise table.error(name, "printer names use letters, digits, '_', '.', '-'")
        printers[name] = parse_printer(table.table(name), name)
    return printers


def adhoc_printer(address: str, *, color: bool = False) -> Printer:
    """A printer given on the command line as AE@HOST:PORT, with permissive capabilities."""
    m = _ADDR_RE.match(address)
    if not m or not re.fullmatch(_AE_RE, m["ae"]) or not 0 < int(m["port"]) < 65536:
        raise UsageError(f"--printer {address!r}: expected a configured printer name or "
                         "AE@HOST:PORT")
    return Printer(name=address, ae_title=m["ae"], host=m["host"].strip("[]"),
                   port=int(m["port"]), color=color, presentation_lut=True, bits=(8, 12))


def resolve_printer(spec: str, printers: dict[str, Printer], *, color: bool = False) -> Printer:
    """A configured printer by name, or an AE@HOST:PORT address."""
    if spec in printers:
        return printers[spec]
    if "@" in spec:
        return adhoc_printer(spec, color=color)
    known = ", ".join(sorted(printers)) or "none configured"
    raise UsageError(f"unknown printer {spec!r} (configured: {known}); or give AE@HOST:PORT")
