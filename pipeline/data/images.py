"""Reading photos: any of jpg/jpeg/png, any mode (grayscale, CMYK and RGBA are converted to RGB), upright by their
EXIF orientation, and brought to the cache's aspect ratio by a centred crop, never by stretching."""
from __future__ import annotations

import re
from math import gcd
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# How photos are decoded, part of the photo cache's key: a cache decoded otherwise is built again.
DECODING = "upright-centred"
ORIENTATION = 0x0112  # the EXIF tag
TURNED = (5, 6, 7, 8)  # orientations that swap width and height
RATIO_TOLERANCE = 0.01  # a photo within 1% of the cache's ratio is resized as it is

CONVERTED_MODES = {"L": "grayscale", "LA": "grayscale", "I;16": "grayscale 16-bit", "I;16B": "grayscale 16-bit",
                   "I": "grayscale 16-bit", "CMYK": "CMYK", "RGBA": "RGBA", "P": "palette"}


# 16- and 32-bit greyscale (16-bit PNGs open as I;16 or I): PIL's convert("RGB") clips them to white.
HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _grey16_to_rgb8(im: Image.Image) -> np.ndarray:
    """Scale a 16-bit greyscale photo to 8 bits (65535 -> 255) and repeat it over three channels."""
    grey = np.asarray(im, dtype=np.float64)
    grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


MIN_SIDE = 32  # pixels: a smaller photo cannot show a face
# Width / height outside this range is far from a portrait (competition photos are 3:4 = 0.75)
ASPECT_RANGE = (0.375, 1.5)


def size_warning(width: int, height: int) -> str | None:
    """Why a readable photo's size is questionable (tiny, or far from a portrait's shape), else None."""
    if min(width, height) < MIN_SIDE:
        return f"{width}x{height} pixels, too small to show a face (under {MIN_SIDE} a side); check the photo"
    if not ASPECT_RANGE[0] <= width / height <= ASPECT_RANGE[1]:
        return f"{width}x{height} pixels, far from a portrait's shape (competition photos are 3:4); check the photo"
    return None


def inspect_image(path: str | Path) -> tuple[str | None, str | None, str | None]:
    """(problem, mode, warning): problem is None for a readable photo; mode names a converted mode, else None;
    warning says why its size is questionable, else None."""
    return inspect_photo(path)[:3]


def inspect_photo(path: str | Path) -> tuple[str | None, str | None, str | None, tuple[int, int, int] | None]:
    """inspect_image's (problem, mode, warning) and photo_shape's shape (None where there is a problem), from one
    opening of the photo: a PNG's EXIF may follow its pixels, so asking for the shape alone decodes it again."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes); replace it with the original photo", None, None, None
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            # A reduced-scale JPEG decode still reads the whole stream, so truncation is caught at a fraction
            # of the cost of a full decode.
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            turn = _orientation(im)
    except FileNotFoundError:
        return "file not found", None, None, None
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify it); replace it with the original photo", None, None, None
    except Image.DecompressionBombError as e:
        numbers = re.findall(r"\d+", str(e))  # "Image size (N pixels) exceeds limit of M pixels, ..."
        why = f"{numbers[0]} pixels, over PIL's decompression-bomb limit of {numbers[1]}" if len(numbers) == 2 else e
        return f"too large to decode safely ({why}); replace it with a smaller copy of the photo", None, None, None
    except (OSError, SyntaxError, ValueError) as e:
        return f"unreadable or truncated image ({e}); replace it with the original photo", None, None, None
    w, h = size
    shape = (h, w, turn) if turn in TURNED else (w, h, turn)
    return None, CONVERTED_MODES.get(mode), size_warning(*size), shape


def inspect_photos(files: list[str]) -> list[tuple]:
    """inspect_photo of each file: a chunk of a scan's work for one worker process, which imports no more than
    this module to do it."""
    return [inspect_photo(f) for f in files]


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - damaged EXIF: the pixels as stored
        return 1


def photo_shape(path: str | Path) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) of a photo as it is shown, upright; from its header. None if unreadable."""
    try:
        with Image.open(path) as im:
            turn = _orientation(im)
            w, h = im.size
    except Exception:  # noqa: BLE001 - unreadable photos are named by inspect_image
        return None
    return (h, w, turn) if turn in TURNED else (w, h, turn)


def off_ratio(width: int, height: int, size: tuple[int, int]) -> bool:
    """Whether a width x height photo differs from the aspect ratio of size=(width, height) by more than 1%."""
    return abs(width * size[1] / (height * size[0]) - 1) > RATIO_TOLERANCE


def centre_to_ratio(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The largest centred part of `arr` with the aspect ratio of size=(width, height) (arr itself when close)."""
    h, w = arr.shape[:2]
    if not off_ratio(w, h, size):
        return arr
    if w * size[1] > h * size[0]:  # wider than the cache: keep the full height
        keep = max(1, round(h * size[0] / size[1]))
        x0 = (w - keep) // 2
        return arr[:, x0 : x0 + keep]
    keep = max(1, round(w * size[1] / size[0]))
    y0 = (h - keep) // 2
    return arr[y0 : y0 + keep]


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to an upright RGB uint8 array (H, W, 3); with size=(width, height), centre-cropped to that aspect ratio
    and resized to it."""
    with Image.open(path) as im:
        turn = _orientation(im)
        if size is not None:
            # JPEG draft decodes at 1/2, 1/4 or 1/8 scale straight from the DCT: about twice as fast at half size.
            im.draft("RGB", (size[1], size[0]) if turn in TURNED else (size[0], size[1]))
        if turn != 1:
            im = ImageOps.exif_transpose(im)
        if im.mode in HIGH_DEPTH:
            arr = _grey16_to_rgb8(im)
        else:
            arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    if size is not None:
        arr = centre_to_ratio(arr, size)
        if (arr.shape[1], arr.shape[0]) != tuple(size):
            arr = cv2.resize(arr, tuple(size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def shape_notes(shapes: list[tuple[str, tuple | None]], size: tuple[int, int]) -> list[str]:
    """What check-data and predict say about photos turned upright or not at the cache's ratio (shapes: (file,
    photo_shape) pairs)."""
    k = gcd(*size)
    ratio = f"{size[0] // k}:{size[1] // k}"
    turned = [f for f, s in shapes if s and s[2] != 1]
    off = [(f, s) for f, s in shapes if s and off_ratio(s[0], s[1], size)]
    notes = []
    if turned:
        notes.append(f"{len(turned)} photo(s) turned upright by their EXIF orientation (e.g. {turned[0]})")
    if off:
        f, s = off[0]
        notes.append(f"{len(off)} photo(s) not at the cache's {ratio} ratio (e.g. {f}, {s[0]}x{s[1]}): cropped to "
                     f"{ratio} around their centre (or their face, with data.crop: face), never stretched")
    return notes
