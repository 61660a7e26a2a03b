#!/usr/bin/env python3
"""Draws OnAir's default slate, `default_slate.png` (1920x1080), beside this script.

The slate is what viewers see while a live stream's encoder is away. It is drawn, not
photographed, so that it stays small as a PNG (flat colours and a vertical gradient whose rows
compress to almost nothing) and encodes cleanly as H.264 (no noise, no fine texture).

Run it again after changing it (Pillow and the DejaVu fonts, Debian's fonts-dejavu-core):

    python3 -m venv /tmp/slate-venv && /tmp/slate-venv/bin/pip install pillow
    /tmp/slate-venv/bin/python crates/slate/assets/make_default_slate.py

and commit the PNG with the script.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1920, 1080
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
OUT = Path(__file__).with_name("default_slate.png")

TOP = (22, 27, 44)  # deep navy
BOTTOM = (8, 9, 14)  # near black
TITLE = (242, 244, 248)
SUBTITLE = (150, 158, 178)
ACCENT = (226, 59, 59)  # the "on air" lamp red
LAMP_OFF = (92, 36, 40)


def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def centered(draw: ImageDraw.ImageDraw, y: int, text: str, face, fill) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=face)
    draw.text(((WIDTH - (right - left)) // 2 - left, y), text, font=face, fill=fill)


def main() -> None:
    # A vertical gradient: every row is one colour, which PNG's Up filter turns into zeros.
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    for y in range(HEIGHT):
        t = y / (HEIGHT - 1)
        row = tuple(round(a + (b - a) * t) for a, b in zip(TOP, BOTTOM))
        draw.line([(0, y), (WIDTH, y)], fill=row)

    # The "ON AIR" sign, its lamp off: the broadcaster is away.
    badge_font = font("DejaVuSans-Bold.ttf", 34)
    label = "ON AIR"
    left, top, right, bottom = draw.textbbox((0, 0), label, font=badge_font)
    pad_x, pad_y, lamp = 30, 16, 18
    badge_w = pad_x * 2 + lamp + 16 + (right - left)
    badge_h = pad_y * 2 + (bottom - top)
    bx, by = (WIDTH - badge_w) // 2, 300
    draw.rounded_rectangle(
        [bx, by, bx + badge_w, by + badge_h], radius=12, outline=LAMP_OFF, width=3
    )
    cy = by + badge_h // 2
    draw.ellipse([bx + pad_x, cy - lamp // 2, bx + pad_x + lamp, cy + lamp // 2], fill=LAMP_OFF)
    draw.text(
        (bx + pad_x + lamp + 16 - left, by + pad_y - top), label, font=badge_font, fill=LAMP_OFF
    )

    centered(draw, 430, "We\u2019ll be right back", font("DejaVuSans-Bold.ttf", 112), TITLE)
    # A short accent rule between the title and the subtitle.
    draw.rounded_rectangle([WIDTH // 2 - 60, 600, WIDTH // 2 + 60, 606], radius=3, fill=ACCENT)
    centered(
        draw,
        650,
        "The stream will resume in a moment. Please stay tuned.",
        font("DejaVuSans.ttf", 44),
        SUBTITLE,
    )

    image.save(OUT, optimize=True)
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
