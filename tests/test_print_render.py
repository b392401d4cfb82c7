"""Film layouts, printer capabilities and the renderer, on real images of ../shared/testdata.

Expected values are computed here from the standard's formulas on pydicom's decoding, not by
calling the renderer's own helpers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TESTDATA
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mediasvc.config import Table, load_toml
from mediasvc.errors import ConfigError, InputError, UsageError
from mediasvc.printing.annotate import AnnotationTemplate, attribute_text
from mediasvc.printing.layouts import (
    default_layout,
    film_layout,
    film_layouts,
    parse_display_format,
)
from mediasvc.printing.printers import adhoc_printer, check_request, parse_printers
from mediasvc.printing.render import (
    RenderOptions,
    compose,
    load_images,
    render_box,
    render_films,
    write_previews,
)

INST = TESTDATA / "instances"
CT = INST / "CT" / "libdicom__ct_brain_single.dcm"  # rescale -1024, window 45/100
CR_MONO1 = INST / "CR" / "fo-dicom__CR-MONO1-10-chest"  # MONOCHROME1, no File Meta header
CR_MONO1_JPEG = INST / "CR" / "orthanc-tests__Issue44_Monochrome1-Jpeg.dcm"  # JPEG baseline
US_RGB = INST / "US" / "orthanc-tests__2023-04-21-RLEPlanarConfigurationYBR_FULL.dcm"
US_MULTI = INST / "US" / ("dicomParser__encapsulated_multi-frame_IM00001."
                          "fragmented_no_bot_jpeg_baseline.50.dcm")  # 8 frames, JPEG


def linear_window(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently."""
    y = ((x - (c - 0.5)) / (w - 1) + 0.5)
    return np.clip(y, 0.0, 1.0)


def native(src_path: Path, **kw: object) -> np.ndarray:
    """Render at the image's own size with REPLICATE: no resampling, pixels map 1:1."""
    src = load_images([src_path])[0]
    rows, cols = src.pixels.shape[:2]
    opts = RenderOptions(magnification="REPLICATE", **kw)  # type: ignore[arg-type]
    return render_box(src, cols, rows, opts)


# -- rendering -------------------------------------------------------------------------------

def test_ct_rescale_and_window_from_file() -> None:
    ds = pydicom.dcmread(CT)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.rint(linear_window(hu, 45, 100) * 4095)
    got = native(CT, bits=12)
    assert got.dtype == np.uint16 and got.shape == (512, 512)
    assert np.abs(got.astype(np.int64) - expected).max() <= 1
    # brain tissue sits inside the window, air (-1000 HU) is black, bone white
    assert got[hu < -500].max() == 0 and got[hu > 500].min() == 4095


def test_ct_window_overridden_per_job_and_8_bit() -> None:
    ds = pydicom.dcmread(CT)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    got = native(CT, bits=8, window=(300.0, 1500.0))
    assert got.dtype == np.uint8
    assert np.abs(got.astype(np.int64) - np.rint(linear_window(hu, 300, 1500) * 255)).max() <= 1
    assert not np.array_equal(got, native(CT, bits=8))


def test_monochrome1_is_inverted_after_voi() -> None:
    ds = pydicom.dcmread(CR_MONO1, force=True)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    raw = ds.pixel_array.astype(np.float64)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = np.rint((1.0 - linear_window(raw, c, w)) * 4095)
    got = native(CR_MONO1, bits=12)
    assert np.abs(got.astype(np.int64) - expected).max() <= 1
    # MONOCHROME1: the highest stored value prints darker than the lowest
    assert got.flat[int(raw.argmax())] < got.flat[int(raw.argmin())]


def test_jpeg_monochrome1_cr_decoded_and_windowed() -> None:
    ds = pydicom.dcmread(CR_MONO1_JPEG)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    raw = ds.pixel_array.astype(np.float64)
    expected = np.rint((1.0 - linear_window(raw, float(ds.WindowCenter),
                                            float(ds.WindowWidth))) * 255)
    got = native(CR_MONO1_JPEG, bits=8)
    assert got.shape == raw.shape
    assert np.abs(got.astype(np.int64) - expected).max() <= 1


def test_rgb_us_stays_rgb_for_color_and_becomes_luma_for_gray() -> None:
    rgb = pydicom.dcmread(US_RGB).pixel_array  # YBR_FULL RLE -> RGB by pydicom
    color = native(US_RGB, color=True)
    assert color.shape == rgb.shape and color.dtype == np.uint8
    assert np.array_equal(color, rgb)
    gray = native(US_RGB, bits=8)
    luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    assert np.abs(gray.astype(int) - luma.astype(int)).max() <= 1


def test_multiframe_jpeg_gives_one_box_per_frame() -> None:
    ds = pydicom.dcmread(US_MULTI)
    frames = ds.pixel_array
    images = load_images([US_MULTI])
    assert len(images) == int(ds.NumberOfFrames) == 8
    layout = default_layout("STANDARD\\3,3")
    opts = RenderOptions(color=True, magnification="REPLICATE")
    films = render_films(images, layout, (320 * 3, 240 * 3), opts)
    assert len(films) == 1 and len(films[0].boxes) == 8
    for k, box in enumerate(films[0].boxes):
        assert np.array_equal(box, frames[k])
    assert not np.array_equal(films[0].boxes[0], films[0].boxes[7])


def test_fit_keeps_aspect_ratio_centred_on_black() -> None:
    src = load_images([CT])[0]
    box = render_box(src, 300, 100, RenderOptions(magnification="BILINEAR"))
    assert box.shape == (100, 300)
    assert box[:, :100].max() == 0 and box[:, 200:].max() == 0  # 100x100 image in the middle
    assert box[:, 100:200].max() > 0


def test_non_square_pixels_are_stretched() -> None:
    src = load_images([CT])[0]
    src.dataset.PixelSpacing = [1.0, 0.5]  # columns half as wide as rows are tall
    # REVERSE: the image's air prints white, so the image's extent shows against the black box
    box = render_box(src, 512, 512, RenderOptions(magnification="BILINEAR", polarity="REVERSE"))
    cols = np.nonzero(box.max(axis=0))[0]
    assert 240 <= cols.max() - cols.min() + 1 <= 260  # 512 columns * 0.5 wide


def test_polarity_reverse_and_inverse_plut() -> None:
    normal = native(CT, bits=12)
    reverse = native(CT, bits=12, polarity="REVERSE")
    inverse = native(CT, bits=12, plut_shape="INVERSE")
    assert np.array_equal(reverse, 4095 - normal)
    assert np.array_equal(inverse, reverse)
    both = native(CT, bits=12, polarity="REVERSE", plut_shape="INVERSE")
    assert np.array_equal(both, normal)


def test_annotation_burned_in_from_template() -> None:
    template = AnnotationTemplate(top_left="{PatientName}\n{PatientID}",
                                  bottom_right="{text} {frame}/{frames}", size=0.04)
    src = load_images([CT])[0]
    src.dataset.PatientName = "DOE^JOHN"
    src.dataset.PatientID = "PID123"
    plain = render_box(src, 600, 600, RenderOptions())
    marked = render_box(src, 600, 600, RenderOptions(annotation=template, text="KEEP"))
    diff = plain != marked
    assert diff[:60, :200].any() and diff[-60:, -200:].any()  # top left and bottom right
    assert not diff[250:350, 250:350].any()  # the image centre is untouched
    assert set(np.unique(marked[diff])) <= {0, 255}  # white text, black outline, no greys
    texts = template.render_text(src.dataset, text="KEEP", frame=1, frames=1)
    assert texts["bottom_right"] == "KEEP 1/1"
    assert "^" not in texts["top_left"]


def test_attribute_text_formats_dates_and_names() -> None:
    ds = pydicom.Dataset()
    ds.PatientName = "DOE^JOHN^^MR"
    ds.StudyDate = "20240131"
    ds.SeriesNumber = 3
    assert attribute_text(ds, "PatientName") == "DOE JOHN MR"
    assert attribute_text(ds, "StudyDate") == "2024-01-31"
    assert attribute_text(ds, "SeriesNumber") == "3"
    assert attribute_text(ds, "InstitutionName") == ""


def test_preview_composes_the_film(tmp_path: Path) -> None:
    images = load_images([CT, CR_MONO1, US_RGB])
    layout = default_layout("STANDARD\\2,2")
    films = render_films(images, layout, (400, 500), RenderOptions(bits=12))
    [out] = write_previews(films, tmp_path / "film.png")
    png = np.asarray(Image.open(out))
    assert png.shape == (500, 400)
    for (x, y, w, h), box in zip(films[0].rects, films[0].boxes, strict=True):
        assert np.array_equal(png[y:y + h, x:x + w], (box >> 4).astype(np.uint8))
    assert png[250:, 200:].max() == 0  # the fourth box is empty
    assert np.array_equal(np.asarray(compose(films[0])), png)


def test_unreadable_input_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "junk.dcm"
    bad.write_bytes(b"not dicom at all" * 20)
    with pytest.raises(InputError, match="junk.dcm"):
        load_images([bad])
    with pytest.raises(InputError, match="no Pixel Data"):
        load_images([INST / "DX" / "orthanc-tests__Issue56-NoPixelData.dcm"])


# -- layouts ---------------------------------------------------------------------------------

def test_display_formats_and_box_geometry() -> None:
    assert parse_display_format("STANDARD\\4,5").boxes == 20
    row = parse_display_format("ROW\\1,2")
    assert row.boxes == 3
    assert row.box_rects(200, 100) == [(0, 0, 200, 50), (0, 50, 100, 50), (100, 50, 100, 50)]
    col = parse_display_format("COL\\2,1")
    assert col.box_rects(200, 100) == [(0, 0, 100, 50), (0, 50, 100, 50), (100, 0, 100, 100)]
    std = parse_display_format("STANDARD\\2,3")
    assert std.box_rects(200, 300)[3] == (100, 100, 100, 100)  # column 2, row 2
    for bad in ("STANDARD\\2", "STANDARD\x022,2", "SLIDE", "ROW\\0,1"):
        with pytest.raises(ValueError):
            parse_display_format(bad)


def test_shipped_layouts_load() -> None:
    layouts = film_layouts()
    assert {"ct-4x5", "ct-3x4", "mr-2x2", "cr-1x1", "paper-row-1-2"} <= set(layouts)
    ct = layouts["ct-4x5"]
    assert ct.display_format.text == "STANDARD\\4,5" and ct.bits == 12
    assert ct.film_box_attributes()["FilmSizeID"] == "14INX17IN"
    assert ct.film_session_attributes()["MediumType"] == "BLUE FILM"


@pytest.mark.parametrize(("text", "key"), [
    ('display_format = "STANDARD\\\\2"', "display_format"),
    ('display_format = "STANDARD\\\\2,2"\nfilm_size = "35CMX43CM"', "film_size"),
    ('display_format = "STANDARD\\\\2,2"\nbits = 10', "bits"),
    ('display_format = "STANDARD\\\\2,2"\ncolour = true', "colour"),
    ('display_format = "STANDARD\\\\2,2"\n[annotation]\ntop_left = "{PatientNam}"',
     "annotation.top_left"),
])
def test_bad_layout_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n{text}\n')
    with pytest.raises(ConfigError) as err:
        film_layout(str(path))
    assert err.value.key == key and "bad.toml" in str(err.value)


def test_overrides_are_validated() -> None:
    layout = film_layout("ct-4x5").with_overrides(film_size="8INX10IN", copies=3)
    assert layout.film_size == "8INX10IN" and layout.copies == 3
    with pytest.raises(UsageError, match="film-size"):
        film_layout("ct-4x5").with_overrides(film_size="HUGE")
    with pytest.raises(UsageError, match="unknown film layout"):
        film_layout("no-such-layout")


# -- printers --------------------------------------------------------------------------------

PRINTERS_TOML = """
[printers.dryview]
ae_title = "DRYVIEW"
host = "127.0.0.1"
port = 41199
formats = ["STANDARD\\\\1,1", "STANDARD\\\\2,2", "ROW"]
film_sizes = ["14INX17IN", "8INX10IN"]
media = ["BLUE FILM"]
dpi = 320
pixel_matrix = { "8INX10IN" = [2000, 2500] }
bits = [8]
"""


def _printers(tmp_path: Path, text: str = PRINTERS_TOML) -> Table:
    path = tmp_path / "mediasvc.toml"
    path.write_text(text)
    return load_toml(path).table("printers")


def test_printers_parse_and_film_matrix(tmp_path: Path) -> None:
    p = parse_printers(_printers(tmp_path))["dryview"]
    assert (p.ae_title, p.port, p.dpi, p.bits) == ("DRYVIEW", 41199, 320, (8,))
    assert p.film_matrix("14INX17IN", "PORTRAIT") == (4480, 5440)
    assert p.film_matrix("14INX17IN", "LANDSCAPE") == (5440, 4480)
    assert p.film_matrix("8INX10IN", "PORTRAIT") == (2000, 2500)


@pytest.mark.parametrize(("change", "attribute"), [
    ({"display_format": parse_display_format("STANDARD\\3,4")}, "Image Display Format"),
    ({"film_size": "11INX14IN"}, "Film Size ID (2010,0050)"),
    ({"medium": "PAPER"}, "Medium Type (2000,0030)"),
    ({"bits": 12}, "Bits Stored (0028,0101)"),
])
def test_capability_refused_naming_the_attribute(tmp_path: Path, change: dict[str, object],
                                                 attribute: str) -> None:
    p = parse_printers(_printers(tmp_path))["dryview"]
    layout = replace(default_layout("STANDARD\\2,2"), **change)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as err:
        check_request(p, layout, color=False)
    assert attribute in str(err.value) and "dryview" in str(err.value)
    check_request(p, default_layout("ROW\\1,2"), color=False)  # a kind alone allows any


def test_color_refused_by_grayscale_printer(tmp_path: Path) -> None:
    p = parse_printers(_printers(tmp_path))["dryview"]
    with pytest.raises(UsageError, match="Basic Color"):
        check_request(p, default_layout("STANDARD\\1,1"), color=True)


@pytest.mark.parametrize(("line", "key"), [
    ('port = "x"', "printers.dryview.port"),
    ('film_sizes = ["HUGE"]', "printers.dryview.film_sizes"),
    ('bits = [10]', "printers.dryview.bits"),
    ('formats = ["STANDARD\\\\2"]', "printers.dryview.formats"),
    ('colour = true', "printers.dryview.colour"),
    ('[printers.dryview.tls]\ncert = "/nonexistent.pem"', "printers.dryview.tls.cert"),
])
def test_bad_printer_config_names_key(tmp_path: Path, line: str, key: str) -> None:
    # drop the line the case replaces (TOML refuses a key given twice)
    key_name = line.split(" ", 1)[0]
    text = "\n".join(ln for ln in PRINTERS_TOML.splitlines()
                     if not ln.startswith(key_name + " ")) + "\n"
    with pytest.raises(ConfigError) as err:
        parse_printers(_printers(tmp_path, text + line + "\n"))
    assert err.value.key == key


def test_adhoc_printer_address() -> None:
    p = adhoc_printer("PRINTRIG@127.0.0.1:104")
    assert (p.ae_title, p.host, p.port) == ("PRINTRIG", "127.0.0.1", 104)
    with pytest.raises(UsageError):
        adhoc_printer("PRINTRIG@127.0.0.1")


def _synthetic(tmp_path: Path, **attrs: object) -> Path:
    """A small MONOCHROME2 image written with pydicom, with the given extra attributes."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 16, 16, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 16).reshape(16, 16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    path = tmp_path / "synthetic.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_voi_lut_sequence_applied(tmp_path: Path) -> None:
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    lut = (4095 - np.arange(4096)).astype(np.uint16)  # an inverting LUT: easy to recognise
    item.add_new(0x00283006, "US", lut.tolist())  # LUT Data
    path = _synthetic(tmp_path, VOILUTSequence=[item])
    stored = (np.arange(256) * 16).reshape(16, 16)
    got = native(path, bits=12)
    assert np.array_equal(got.astype(int), 4095 - stored)


def test_sigmoid_voi_lut_function(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, WindowCenter=2048, WindowWidth=1000, VOILUTFunction="SIGMOID")
    stored = (np.arange(256) * 16).reshape(16, 16).astype(np.float64)
    expected = np.rint(4095 / (1 + np.exp(-4 * (stored - 2048) / 1000)))
    assert np.abs(native(path, bits=12).astype(int) - expected).max() <= 1


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["STANDARD", "ROW", "COL"]),
       counts=st.lists(st.integers(1, 6), min_size=1, max_size=5),
       width=st.integers(50, 3000), height=st.integers(50, 3000))
def test_boxes_tile_the_film_without_overlap(kind: str, counts: list[int], width: int,
                                             height: int) -> None:
    if kind == "STANDARD":
        counts = (counts + [1])[:2]
    fmt = parse_display_format(f"{kind}\\{','.join(map(str, counts))}")
    rects = fmt.box_rects(width, height)
    assert len(rects) == fmt.boxes
    used = np.zeros((height, width), dtype=np.uint8)
    for x, y, w, h in rects:
        assert w > 0 and h > 0 and x + w <= width and y + h <= height
        used[y:y + h, x:x + w] += 1
    assert used.max() == 1
