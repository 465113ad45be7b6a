#!/usr/bin/env python3
"""Draws the app icons (ours: a camera lens on a film-blue tile) as PNG files.

    python3 assets/icons/make-icons.py      (needs Pillow)

Writes icon-192.png, icon-512.png (any purpose) and maskable-512.png (the glyph kept inside
the 80% safe zone a launcher may crop to) next to this script. icon.svg is the same drawing
by hand, for browsers that take SVG.
"""
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
TILE = (21, 101, 192)      # #1565c0
LENS = (255, 255, 255)
RING = (144, 202, 249)     # #90caf9
DOT = (255, 213, 79)       # #ffd54f


def draw(size, maskable):
    scale = 4  # draw large, then shrink, for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if maskable:
        d.rectangle([0, 0, s, s], fill=TILE)
        inner = 0.62  # glyph inside the safe zone
    else:
        d.rounded_rectangle([0, 0, s - 1, s - 1], radius=int(s * 0.22), fill=TILE)
        inner = 0.78
    g = s * inner
    o = (s - g) / 2
    # camera body
    d.rounded_rectangle([o, o + g * 0.18, o + g, o + g * 0.9], radius=int(g * 0.12), fill=LENS)
    d.rounded_rectangle([o + g * 0.3, o + g * 0.06, o + g * 0.7, o + g * 0.26], radius=int(g * 0.05), fill=LENS)
    # lens
    c, r = (s / 2, o + g * 0.54), g * 0.25
    d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=TILE)
    r2 = r * 0.68
    d.ellipse([c[0] - r2, c[1] - r2, c[0] + r2, c[1] + r2], fill=RING)
    # flash dot
    fr = g * 0.05
    fx, fy = o + g * 0.84, o + g * 0.3
    d.ellipse([fx - fr, fy - fr, fx + fr, fy + fr], fill=DOT)
    return img.resize((size, size), Image.LANCZOS)


def main():
    draw(192, False).save(os.path.join(HERE, "icon-192.png"), optimize=True)
    draw(512, False).save(os.path.join(HERE, "icon-512.png"), optimize=True)
    draw(512, True).save(os.path.join(HERE, "maskable-512.png"), optimize=True)


if __name__ == "__main__":
    main()
