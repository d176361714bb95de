"""Reading photos: any of jpg/jpeg/png, any mode (grayscale, CMYK and RGBA are converted to RGB)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

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
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes); replace it with the original photo", None, None
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            # A reduced-scale JPEG decode still reads the whole stream, so truncation is caught at a fraction
            # of the cost of a full decode.
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except FileNotFoundError:
        return "file not found", None, None
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify it); replace it with the original photo", None, None
    except (OSError, SyntaxError, ValueError) as e:
        return f"unreadable or truncated image ({e}); replace it with the original photo", None, None
    return None, CONVERTED_MODES.get(mode), size_warning(*size)


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to an RGB uint8 array (H, W, 3), resized to size=(width, height) when given."""
    with Image.open(path) as im:
        if size is not None:
            # JPEG draft decodes at 1/2, 1/4 or 1/8 scale straight from the DCT: about twice as fast at half size.
            im.draft("RGB", (size[0], size[1]))
        if im.mode in HIGH_DEPTH:
            arr = _grey16_to_rgb8(im)
        else:
            arr = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        arr = cv2.resize(arr, tuple(size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)
