"""Reading photos: any of jpg/jpeg/png, any mode (grayscale, CMYK and RGBA are converted to RGB)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

CONVERTED_MODES = {"L": "grayscale", "LA": "grayscale", "I;16": "grayscale", "CMYK": "CMYK", "RGBA": "RGBA", "P": "palette"}


def inspect_image(path: str | Path) -> tuple[str | None, str | None]:
    """(problem, mode): problem is None for a readable photo; mode names a converted mode, else None."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes); replace it with the original photo", None
        with Image.open(path) as im:
            mode = im.mode
            # A reduced-scale JPEG decode still reads the whole stream, so truncation is caught at a fraction
            # of the cost of a full decode.
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except FileNotFoundError:
        return "file not found", None
    except UnidentifiedImageError:
        return "not an image (PIL cannot identify it); replace it with the original photo", None
    except (OSError, SyntaxError, ValueError) as e:
        return f"unreadable or truncated image ({e}); replace it with the original photo", None
    return None, CONVERTED_MODES.get(mode)


def read_rgb(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode to an RGB uint8 array (H, W, 3), resized to size=(width, height) when given."""
    with Image.open(path) as im:
        if size is not None:
            # JPEG draft decodes at 1/2, 1/4 or 1/8 scale straight from the DCT: about twice as fast at half size.
            im.draft("RGB", (size[0], size[1]))
        im = im.convert("RGB") if im.mode != "RGB" else im
        arr = np.asarray(im)
    if size is not None and (arr.shape[1], arr.shape[0]) != tuple(size):
        arr = cv2.resize(arr, tuple(size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)
