"""Film layouts as data: profiles/film/*.toml, validated at load through config.Table.

A layout is everything the Basic Film Session and Basic Film Box N-CREATEs carry
(PS3.3 C.13.1 and C.13.3) plus how the renderer prepares the boxes (polarity, Presentation LUT
shape, bit depth, the annotation template of the ISG formatter, seeds/004 appendix B).

Image Display Format (PS3.3 C.13.3, (2010,0010)):
    STANDARD\\C,R   C columns by R rows of equal boxes
    ROW\\a,b,...    one row per value, each with that many boxes
    COL\\a,b,...    one column per value, each with that many boxes
Boxes are numbered left to right, top to bottom (STANDARD, ROW) or top to bottom, left to
right (COL), starting at 1: that is the Image Box Position (2020,0010).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from mediasvc.config import Table, load_toml
from mediasvc.errors import ConfigError, UsageError
from mediasvc.printing.annotate import AnnotationTemplate, parse_annotation
from mediasvc.profiles import profiles_dir

# PS3.3 C.13.3 Film Size ID defined terms, with their size in mm (width, height) in portrait.
FILM_SIZES_MM: dict[str, tuple[float, float]] = {
    "8INX10IN": (203.2, 254.0),
    "8_5INX11IN": (215.9, 279.4),
    "10INX12IN": (254.0, 304.8),
    "10INX14IN": (254.0, 355.6),
    "11INX14IN": (279.4, 355.6),
    "11INX17IN": (279.4, 431.8),
    "14INX14IN": (355.6, 355.6),
    "14INX17IN": (355.6, 431.8),
    "24CMX24CM": (240.0, 240.0),
    "24CMX30CM": (240.0, 300.0),
    "A4": (210.0, 297.0),
    "A3": (297.0, 420.0),
}
ORIENTATIONS = ("PORTRAIT", "LANDSCAPE")
MAGNIFICATIONS = ("REPLICATE", "BILINEAR", "CUBIC", "NONE")
PRIORITIES = ("HIGH", "MED", "LOW")
POLARITIES = ("NORMAL", "REVERSE")
PLUT_SHAPES = ("IDENTITY", "INVERSE")
MEDIA = ("PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM", "MAMMO BLUE FILM")
DESTINATIONS_RE = r"MAGAZINE|PROCESSOR|BIN_\d+"
DENSITY_RE = r"BLACK|WHITE|\d{1,4}"

_FORMAT_RE = re.compile(r"^(STANDARD)\\(\d+),(\d+)$|^(ROW|COL)\\(\d+(?:,\d+)*)$")


@dataclass(frozen=True)
class DisplayFormat:
    """A parsed Image Display Format; ``text`` is the value sent, e.g. ``STANDARD\\2,2``."""

    kind: str  # STANDARD | ROW | COL
    counts: tuple[int, ...]  # STANDARD: (columns, rows); ROW/COL: boxes per row/column
    text: str

    @property
    def boxes(self) -> int:
        if self.kind == "STANDARD":
            return self.counts[0] * self.counts[1]
        return sum(self.counts)

    def box_rects(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) of every box on a film of width x height pixels, in position order.

        Boxes tile the film exactly; integer division leaves any remainder to the last
        row/column so that no box is larger than the printer's matrix allows.
        """
        rects: list[tuple[int, int, int, int]] = []
        if self.kind == "STANDARD":
            cols, rows = self.counts
            bw, bh = width // cols, height // rows
            for r in range(rows):
                for c in range(cols):
                    rects.append((c * bw, r * bh, bw, bh))
        elif self.kind == "ROW":
            bh = height // len(self.counts)
            for r, n in enumerate(self.counts):
                bw = width // n
                rects.extend((c * bw, r * bh, bw, bh) for c in range(n))
        else:  # COL
            bw = width // len(self.counts)
            for c, n in enumerate(self.counts):
                bh = height // n
                rects.extend((c * bw, r * bh, bw, bh) for r in range(n))
        return rects


def parse_display_format(text: str) -> DisplayFormat:
    """Parse 'STANDARD\\C,R', 'ROW\\a,b' or 'COL\\a,b'; ValueError with the reason otherwise."""
    m = _FORMAT_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not an Image Display Format such as STANDARD\\2,2, "
                         "ROW\\2,1 or COL\\1,2 (PS3.3 C.13.3)")
    if m.group(1):
        counts: tuple[int, ...] = (int(m.group(2)), int(m.group(3)))
        kind = "STANDARD"
    else:
        kind = m.group(4)
        counts = tuple(int(v) for v in m.group(5).split(","))
    if any(c < 1 or c > 16 for c in counts):
        raise ValueError(f"{text!r}: each count must be between 1 and 16")
    return DisplayFormat(kind, counts, f"{kind}\\{','.join(str(c) for c in counts)}")


@dataclass(frozen=True)
class FilmLayout:
    """One film layout: Film Session + Film Box attributes and rendering choices."""

    name: str
    display_format: DisplayFormat
    film_size: str = "14INX17IN"
    orientation: str = "PORTRAIT"
    magnification: str = "CUBIC"
    smoothing: str | None = None
    border_density: str | None = None
    empty_image_density: str | None = None
    min_density: int | None = None
    max_density: int | None = None
    trim: str | None = None
    medium: str | None = None
    destination: str | None = None
    copies: int = 1
    priority: str = "MED"
    polarity: str = "NORMAL"
    presentation_lut_shape: str = "IDENTITY"
    bits: int = 8
    annotation: AnnotationTemplate = field(default_factory=AnnotationTemplate)
    source: Path | None = None

    def film_box_attributes(self) -> dict[str, object]:
        """Film Box N-CREATE attributes (PS3.3 C.13.3), by keyword; unset ones left out."""
        attrs: dict[str, object] = {
            "ImageDisplayFormat": self.display_format.text,
            "FilmOrientation": self.orientation,
            "FilmSizeID": self.film_size,
            "MagnificationType": self.magnification,
        }
        optional = {
            "SmoothingType": self.smoothing, "BorderDensity": self.border_density,
            "EmptyImageDensity": self.empty_image_density, "MinDensity": self.min_density,
            "MaxDensity": self.max_density, "Trim": self.trim,
        }
        attrs.update({k: v for k, v in optional.items() if v is not None})
        return attrs

    def film_session_attributes(self) -> dict[str, object]:
        """Film Session N-CREATE attributes (PS3.3 C.13.1), by keyword."""
        attrs: dict[str, object] = {"NumberOfCopies": str(self.copies),
                                    "PrintPriority": self.priority}
        if self.medium is not None:
            attrs["MediumType"] = self.medium
        if self.destination is not None:
            attrs["FilmDestination"] = self.destination
        return attrs

    def with_overrides(self, *, display_format: str | None = None, film_size: str | None = None,
                       copies: int | None = None, priority: str | None = None) -> FilmLayout:
        """The layout with command-line overrides applied (validated)."""
        changes: dict[str, object] = {}
        if display_format is not None:
            try:
                changes["display_format"] = parse_display_format(display_format)
            except ValueError as exc:
                raise UsageError(f"--format: {exc}") from None
        if film_size is not None:
            if film_size not in FILM_SIZES_MM:
                raise UsageError(f"--film-size {film_size!r}: not a Film Size ID of PS3.3 "
                                 f"C.13.3 ({', '.join(FILM_SIZES_MM)})")
            changes["film_size"] = film_size
        if copies is not None:
            if not 1 <= copies <= 99:
                raise UsageError("--copies must be between 1 and 99")
            changes["copies"] = copies
        if priority is not None:
            if priority not in PRIORITIES:
                raise UsageError(f"--priority must be one of {', '.join(PRIORITIES)}")
            changes["priority"] = priority
        return replace(self, **changes)  # type: ignore[arg-type]


LAYOUT_KEYS = {
    "name", "display_format", "film_size", "orientation", "magnification", "smoothing",
    "border_density", "empty_image_density", "min_density", "max_density", "trim", "medium",
    "destination", "copies", "priority", "polarity", "presentation_lut_shape", "bits",
    "annotation",
}


def parse_layout(t: Table, name: str) -> FilmLayout:
    """Validate one layout table; errors name file, key and value."""
    t.check_keys(LAYOUT_KEYS)
    fmt_text = t.str("display_format")
    try:
        fmt = parse_display_format(fmt_text)
    except ValueError as exc:
        raise t.error("display_format", str(exc)) from None
    min_d = t.int("min_density", None, min=0, max=9999)
    max_d = t.int("max_density", None, min=0, max=9999)
    if min_d is not None and max_d is not None and min_d >= max_d:
        raise t.error("min_density", f"must be below max_density ({max_d})")
    return FilmLayout(
        name=t.str("name", name),
        display_format=fmt,
        film_size=t.str("film_size", "14INX17IN", choices=FILM_SIZES_MM),
        orientation=t.str("orientation", "PORTRAIT", choices=ORIENTATIONS),
        magnification=t.str("magnification", "CUBIC", choices=MAGNIFICATIONS),
        smoothing=t.str("smoothing", None, pattern=r"[A-Z0-9_ ]{1,16}"),
        border_density=t.str("border_density", None, pattern=DENSITY_RE),
        empty_image_density=t.str("empty_image_density", None, pattern=DENSITY_RE),
        min_density=min_d,
        max_density=max_d,
        trim=t.str("trim", None, choices=("YES", "NO")),
        medium=t.str("medium", None, choices=MEDIA),
        destination=t.str("destination", None, pattern=DESTINATIONS_RE),
        copies=t.int("copies", 1, min=1, max=99),
        priority=t.str("priority", "MED", choices=PRIORITIES),
        polarity=t.str("polarity", "NORMAL", choices=POLARITIES),
        presentation_lut_shape=t.str("presentation_lut_shape", "IDENTITY", choices=PLUT_SHAPES),
        bits=_bits(t),
        annotation=parse_annotation(t.table("annotation")),
        source=t.file,
    )


def _bits(t: Table) -> int:
    bits: int = t.int("bits", 8)
    if bits not in (8, 12):
        raise t.error("bits", "must be 8 or 12 (PS3.3 C.13.5: 8 bits, or 12 bits stored in 16)")
    return bits


def layouts_dir(directory: Path | None = None) -> Path:
    return (directory or profiles_dir()) / "film"


def load_layout_file(path: Path) -> FilmLayout:
    layout = parse_layout(load_toml(path), path.stem)
    if layout.name != path.stem:
        raise ConfigError(path, "name", layout.name, f"must equal the file name ({path.stem})")
    return layout


def film_layouts(directory: Path | None = None) -> dict[str, FilmLayout]:
    """Every layout under profiles/film/, validated; a bad file raises ConfigError."""
    return {p.stem: load_layout_file(p) for p in sorted(layouts_dir(directory).glob("*.toml"))}


def film_layout(name: str, directory: Path | None = None) -> FilmLayout:
    """A layout by name, or by path to a TOML file."""
    if name.endswith(".toml") or "/" in name:
        return load_layout_file(Path(name))
    path = layouts_dir(directory) / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in layouts_dir(directory).glob("*.toml"))
        raise UsageError(f"unknown film layout {name!r}; known: {', '.join(known)}")
    return load_layout_file(path)


def default_layout(display_format: str) -> FilmLayout:
    """A layout made from a bare --format, with the defaults above."""
    try:
        fmt = parse_display_format(display_format)
    except ValueError as exc:
        raise UsageError(f"--format: {exc}") from None
    return FilmLayout(name=fmt.text, display_format=fmt)
