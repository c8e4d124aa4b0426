#!/usr/bin/env python3
# tests/tools/make_shapes.py - writes a tiny image folder of two classes, crosses and hollow
# squares of random size at random places on a noisy background, as PNGs through zlib and
# struct only (PIL may be missing). For tests/tools/test_train_images.sh.
# Usage: make_shapes.py DIR --per-class N [--channels 1|3] [--size S] [--seed N]
# Grey images are one channel of random brightness; RGB ones take a random bright colour for
# the shape and a dark one for the background, so colour says nothing about the class.
import argparse
import os
import random
import struct
import zlib


def png_bytes(rows, width, height, channels):
    """rows: height lists of width * channels values 0..255 (8-bit grey or RGB)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    colour_type = 0 if channels == 1 else 2
    raw = b"".join(b"\x00" + bytes(r) for r in rows)  # filter 0 (none) on every row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def shape_mask(kind, size, rnd):
    """A cross (two bars through a centre) or a hollow square, 5..9 pixels across, at a random place."""
    side = rnd.randint(5, min(9, size - 2))
    top, left = rnd.randint(0, size - side), rnd.randint(0, size - side)
    on = set()
    for i in range(side):
        if kind == "cross":
            on.add((top + side // 2, left + i))
            on.add((top + i, left + side // 2))
        else:
            on.update({(top, left + i), (top + side - 1, left + i), (top + i, left), (top + i, left + side - 1)})
    return on


def image(kind, size, channels, rnd):
    on = shape_mask(kind, size, rnd)
    if channels == 1:
        fg, bg = [rnd.randint(160, 255)], [rnd.randint(0, 60)]
    else:
        fg = [rnd.randint(120, 255) for _ in range(3)]
        bg = [rnd.randint(0, 70) for _ in range(3)]
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            base = fg if (y, x) in on else bg
            row.extend(max(0, min(255, v + rnd.randint(-20, 20))) for v in base)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--per-class", type=int, required=True)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    for kind in ("cross", "square"):
        os.makedirs(os.path.join(a.dir, kind), exist_ok=True)
        for k in range(a.per_class):
            rows = image(kind, a.size, a.channels, rnd)
            with open(os.path.join(a.dir, kind, "%04d.png" % k), "wb") as f:
                f.write(png_bytes(rows, a.size, a.size, a.channels))


if __name__ == "__main__":
    main()
