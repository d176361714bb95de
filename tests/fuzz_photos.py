"""Fuzz mutations of the photos and folders: empty, truncated, damaged, odd-mode, odd-size and bomb photos,
junk, links (good, dangling, looping), FIFOs, folders where files belong and files where folders belong."""
from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fuzz_kit import Case, Work, mutation, rel
from tests.fuzz_tables import BOTH, CHECK

IS_FOLDER = ("folder", "directory")  # a message about a folder where a file belongs must say so


def _any_photo(work: Work) -> Path:
    """A training photo, or now and then an eval photo."""
    return work.eval_photo() if work.rng.random() < 0.25 else work.photo()


def _replace(path: Path, im: Image.Image, fmt: str | None = None) -> None:
    im.save(path, format=fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG"))


@mutation("photo_zero_bytes")
def photo_zero_bytes(work: Work) -> Case:
    p = _any_photo(work)
    p.write_bytes(b"")
    return Case(f"{rel(work, p)} emptied (0 bytes)", names=(rel(work, p),), refuse=CHECK)


@mutation("photo_truncated")
def photo_truncated(work: Work) -> Case:
    p = _any_photo(work)
    data = p.read_bytes()
    cut = work.rng.randrange(1, int(len(data) * 0.9))
    p.write_bytes(data[:cut])
    return Case(f"{rel(work, p)} cut to {cut} of {len(data)} bytes", names=(rel(work, p),), refuse=CHECK)


@mutation("photo_garbage")
def photo_garbage(work: Work) -> Case:
    p = _any_photo(work)
    what = work.rng.choice(["random bytes", "text", "an HTML error page", "a PNG signature only"])
    p.write_bytes({"random bytes": bytes(work.rng.randrange(256) for _ in range(4096)), "text": b"not a photo\n",
                   "an HTML error page": b"<html><body>403 Forbidden</body></html>",
                   "a PNG signature only": b"\x89PNG\r\n\x1a\n"}[what])
    return Case(f"{rel(work, p)} replaced by {what}", names=(rel(work, p),), refuse=CHECK)


@mutation("photo_bitflip")
def photo_bitflip(work: Work) -> Case:
    p = _any_photo(work)
    data = bytearray(p.read_bytes())
    spots = sorted(work.rng.randrange(len(data) // 4, len(data)) for _ in range(work.rng.randint(1, 8)))
    for i in spots:
        data[i] ^= 1 << work.rng.randrange(8)
    p.write_bytes(bytes(data))
    # A JPEG may decode a few flipped bits as noise: then the set means the same; else the photo is named.
    return Case(f"{rel(work, p)}: bits flipped at bytes {spots}", names=(rel(work, p),))


@mutation("photo_reencoded")
def photo_reencoded(work: Work) -> Case:
    p = _any_photo(work)
    fmt = work.rng.choice(["PNG", "JPEG", "BMP", "WEBP", "TIFF"])
    with Image.open(p) as im:
        _replace(p, im.convert("RGB"), fmt)
    return Case(f"{rel(work, p)} re-encoded as {fmt} under its old name", names=(rel(work, p),))


@mutation("photo_mode")
def photo_mode(work: Work) -> Case:
    p = _any_photo(work)
    mode = work.rng.choice(["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
    with Image.open(p) as im:
        im = im.convert("RGB")
        grey16 = mode == "I;16"  # 16-bit grey, as some scanners write it
        out = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257) if grey16 else im.convert(mode)
    _replace(p, out, "JPEG" if mode in ("L", "CMYK", "1") else "PNG")
    return Case(f"{rel(work, p)} saved in mode {mode}", names=(rel(work, p),))


@mutation("photo_odd_size")
def photo_odd_size(work: Work) -> Case:
    p = _any_photo(work)
    size = work.rng.choice([(400, 400), (300, 400), (1200, 1600), (511, 683)])
    with Image.open(p) as im:
        _replace(p, im.convert("RGB").resize(size))
    return Case(f"{rel(work, p)} resized to {size[0]}x{size[1]}", names=(rel(work, p),))


@mutation("photo_questionable_size")
def photo_questionable_size(work: Work) -> Case:
    p = work.photo()
    size = work.rng.choice([(1, 1), (2, 3), (800, 300), (16, 16)])
    with Image.open(p) as im:
        _replace(p, im.convert("RGB").resize(size))
    return Case(f"{rel(work, p)} resized to {size[0]}x{size[1]}", names=(rel(work, p),), warn=True)


@mutation("photo_exif_rotated")
def photo_exif_rotated(work: Work) -> Case:
    p = work.photo()
    with Image.open(p) as im:
        exif = Image.Exif()
        exif[0x0112] = work.rng.choice([3, 6, 8])
        im.convert("RGB").save(p, format="JPEG", exif=exif.tobytes())
    return Case(f"{rel(work, p)} given EXIF orientation {exif[0x0112]}", names=(rel(work, p),))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@mutation("photo_bomb")
def photo_bomb(work: Work) -> Case:
    p = _any_photo(work)
    side = work.rng.choice([20000, 40000, 65000])
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grey: a few bytes claim gigapixels
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                  + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _png_chunk(b"IEND", b""))
    return Case(f"{rel(work, p)} replaced by a {side}x{side} decompression bomb", names=(rel(work, p),), refuse=CHECK)


@mutation("photo_renamed")
def photo_renamed(work: Work) -> Case:
    p = work.photo()
    stem, ext = p.stem, p.suffix
    new = work.rng.choice([stem + ext.upper(), stem + (".jpeg" if ext == ".jpg" else ext), stem + ".JPEG"])
    if new.lower().endswith((".jpg", ".jpeg")) and ext == ".png":
        new = stem + ".PNG"
    p.rename(p.with_name(new))
    return Case(f"{rel(work, p)} renamed {new}", names=(rel(work, p),))


@mutation("photo_misnamed")
def photo_misnamed(work: Work) -> Case:
    p = work.photo()
    new = work.rng.choice([p.stem, p.stem + ".gif", p.stem + ".webp", p.name + ".bak", p.stem.capitalize() + p.suffix,
                           p.stem + " " + p.suffix, p.stem + "(1)" + p.suffix])
    p.rename(p.with_name(new))
    return Case(f"{rel(work, p)} renamed {new!r}", names=(p.parent.name, p.stem), refuse=BOTH)


@mutation("photo_missing")
def photo_missing(work: Work) -> Case:
    p = work.photo()
    p.unlink()
    return Case(f"{rel(work, p)} deleted", names=(p.parent.name, p.stem), refuse=BOTH)


@mutation("photo_extra")
def photo_extra(work: Work) -> Case:
    p = work.photo()
    new = work.rng.choice(["mask6.jpg", "normal2.jpg", "mask1 (copy).jpg", "incorrect.png", "mask0.jpeg",
                           p.stem + (".png" if p.suffix != ".png" else ".jpg")])
    shutil.copy(p, p.with_name(new))
    return Case(f"{p.parent.name}/{new} added (a copy of {p.name})", names=(f"{p.parent.name}/{new}",), refuse=BOTH)


@mutation("photo_is_folder")
def photo_is_folder(work: Work) -> Case:
    p = work.photo()
    p.unlink()
    p.mkdir()
    if work.rng.random() < 0.5:
        shutil.copy(work.photo(p.parent.name), p / "inside.jpg")
    return Case(f"{rel(work, p)} replaced by a folder", names=(rel(work, p), IS_FOLDER), refuse=BOTH)


@mutation("photo_link")
def photo_link(work: Work) -> Case:
    p = _any_photo(work)
    kind = work.rng.choice(["good", "relative", "dangling", "loop"])
    moved = work.outside(p.name)
    p.rename(moved)
    target = {"good": moved, "relative": os.path.relpath(moved, p.parent), "dangling": work.outside("gone.jpg"),
              "loop": p}[kind]
    os.symlink(target, p)
    if kind in ("good", "relative"):
        return Case(f"{rel(work, p)} moved outside and linked back ({kind} link)", names=(rel(work, p),))
    return Case(f"{rel(work, p)} replaced by a {kind} link", names=(rel(work, p),), refuse=BOTH)


@mutation("photo_fifo")
def photo_fifo(work: Work) -> Case:
    p = work.photo()
    p.unlink()
    os.mkfifo(p)
    return Case(f"{rel(work, p)} replaced by a FIFO", names=(rel(work, p), ("FIFO", "fifo", "pipe", "regular file")),
                refuse=BOTH)


@mutation("junk_file")
def junk_file(work: Work) -> Case:
    folder = work.rng.choice([work.photo().parent, work.images, work.data / "eval" / "images"])
    name = work.rng.choice(["._mask1.jpg", ".DS_Store", ".mask1.jpg", "._normal.png", ".~lock.jpg#"]
                           + (["Thumbs.db", "desktop.ini", "notes.txt", "mask1.jpg~", "normal.jpg.part"]
                              if folder.parent == work.images else []))
    (folder / name).write_bytes(bytes(work.rng.randrange(256) for _ in range(64)))
    return Case(f"junk file {name} added to {folder.name}/", names=(name,))


@mutation("junk_folder")
def junk_folder(work: Work) -> Case:
    p = work.photo()
    folder = work.rng.choice([p.parent / "__MACOSX", p.parent / "old", work.images / ".ipynb_checkpoints",
                              p.parent / ".thumbnails"])
    folder.mkdir()
    shutil.copy(p, folder / p.name)
    return Case(f"junk folder {folder.parent.name}/{folder.name}/ holding a copy of {p.name}", names=(folder.name,))


@mutation("person_missing")
def person_missing(work: Work) -> Case:
    _, folder = work.person()
    shutil.rmtree(work.images / folder)
    return Case(f"person folder {folder} deleted", names=(folder,), refuse=BOTH)


@mutation("person_emptied")
def person_emptied(work: Work) -> Case:
    _, folder = work.person()
    shutil.rmtree(work.images / folder)
    (work.images / folder).mkdir()
    return Case(f"person folder {folder} emptied", names=(folder,), refuse=BOTH)


@mutation("person_is_file")
def person_is_file(work: Work) -> Case:
    _, folder = work.person()
    shutil.rmtree(work.images / folder)
    (work.images / folder).write_bytes(b"PK\x03\x04 a zip, say")
    return Case(f"person folder {folder} replaced by a file", names=(folder,), refuse=BOTH)


@mutation("person_nested")
def person_nested(work: Work) -> Case:
    _, folder = work.person()
    src = work.images / folder
    src.rename(work.outside(folder))
    src.mkdir()
    work.outside(folder).rename(src / folder)
    return Case(f"person folder {folder} moved inside a folder of the same name", names=(folder,), refuse=BOTH)


@mutation("person_link")
def person_link(work: Work) -> Case:
    _, folder = work.person()
    kind = work.rng.choice(["good", "dangling", "loop"])
    src = work.images / folder
    src.rename(work.outside(folder))
    os.symlink({"good": work.outside(folder), "dangling": work.outside("gone"), "loop": src}[kind], src)
    if kind == "good":
        return Case(f"person folder {folder} moved outside and linked back", names=(folder,))
    return Case(f"person folder {folder} replaced by a {kind} link", names=(folder,), refuse=BOTH)


@mutation("person_unlisted")
def person_unlisted(work: Work) -> Case:
    _, folder = work.person()
    new = work.rng.choice([folder + "_copy", "999999_female_Asian_70", "neu_ÄÖ", folder + " (1)"])
    shutil.copytree(work.images / folder, work.images / new)
    return Case(f"person folder {new} added but not listed in train.csv", names=(new,), warn=True)


@mutation("folder_is_file")
def folder_is_file(work: Work) -> Case:
    target = work.rng.choice([work.images, work.data / "eval" / "images", work.data / "train"])
    shutil.rmtree(target)
    target.write_text("not a folder\n")
    return Case(f"{rel(work, target)} replaced by a file", names=(target.name,), refuse=BOTH)


@mutation("eval_is_file")
def eval_is_file(work: Work) -> Case:
    shutil.rmtree(work.data / "eval")
    (work.data / "eval").write_text("not a folder\n")
    # not a train-only data set (that is an absent eval/): the file must be named as what it is
    return Case("eval/ replaced by a file", names=("eval", ("not a folder", "a file")), refuse=BOTH)


@mutation("folder_missing")
def folder_missing(work: Work) -> Case:
    target = work.rng.choice([work.images, work.data / "eval", work.data / "eval" / "images", work.data])
    shutil.rmtree(target)
    if target.name == "eval":  # a train-only data set: every train-side figure stays
        return Case("eval/ removed (a train-only data set)", names=("eval",))
    return Case(f"{target.name}/ removed", names=(("images", "train.csv"),), refuse=BOTH)


@mutation("eval_photo_missing")
def eval_photo_missing(work: Work) -> Case:
    p = work.eval_photo()
    p.unlink()
    return Case(f"eval photo {p.name} deleted", names=(p.name,), refuse=BOTH)


@mutation("eval_photo_extra")
def eval_photo_extra(work: Work) -> Case:
    p = work.eval_photo()
    new = work.rng.choice(["extra.jpg", p.stem + ".png", "copy of " + p.name])
    shutil.copy(p, p.with_name(new))
    return Case(f"eval photo {new} added, not in info.csv", names=(new,), refuse=BOTH)


@mutation("person_aliased")
def person_aliased(work: Work) -> Case:
    line, folder = work.person()
    alias = folder + "_b"
    os.symlink(folder if work.rng.random() < 0.5 else work.images / folder, work.images / alias)
    with work.train_csv.open("a") as f:
        f.write(f"999{line},{work.table().loc[line - 2, 'gender']},Asian,40,{alias}\n")
    # The same 7 photos under two persons would be trained on in one fold and validated in another.
    return Case(f"person {alias} added to train.csv, its folder a link to {folder}'s", names=(alias,), refuse=BOTH)


@mutation("photo_aliased")
def photo_aliased(work: Work) -> Case:
    p = work.photo()
    other = work.photo()  # often another person's photo, now and then one of the same person
    if other == p:
        return Case("no change (the photo drawn twice)", names=())
    p.unlink()
    (os.link if work.rng.random() < 0.5 else os.symlink)(other, p)
    return Case(f"{rel(work, p)} replaced by a link to {rel(work, other)}", names=(p.parent.name,), refuse=BOTH)


@mutation("folder_loop_link")
def folder_loop_link(work: Work) -> Case:
    """A link that loops, in any folder a command reads: a photo-named link to itself, or a folder link back up."""
    _, person = work.person()
    where = work.rng.choice(["person", "images", "eval images", "train", "data", "eval"])
    folder = {"person": work.images / person, "images": work.images, "eval images": work.data / "eval" / "images",
              "train": work.data / "train", "data": work.data, "eval": work.data / "eval"}[where]
    name = work.rng.choice(["loop.jpg", "up"])
    os.symlink(name if name == "loop.jpg" else ".", folder / name)
    what = f"a looping link {rel(work, folder / name)} added to the {where} folder"
    if where == "eval images" or (where == "person" and name == "loop.jpg"):  # a photo that cannot be read
        return Case(what, names=(name,), refuse=BOTH)
    if where == "images" and name == "up":  # a folder not listed in train.csv
        return Case(what, names=(name,), warn=True)
    return Case(what, names=())  # not a photo, and no folder a command walks into
