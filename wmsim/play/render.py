"""Drawing into uint8 RGB frames ``(H, W, 3)``: upscaled observations, bar plots of state vectors,
titled panels with text, and rows/grids of panels. numpy and OpenCV (for text) only, no window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BACKGROUND = (24, 24, 28)
TEXT = (230, 230, 230)
DIM_TEXT = (150, 150, 160)
DREAM_COLOUR = (70, 130, 230)
REAL_COLOUR = (240, 150, 40)
STATUS_COLOURS = {"terminated": (235, 70, 60), "truncated": (235, 200, 60)}
LINE_HEIGHT = 15  # pixels per text line
HEADER = 20  # pixels of the title strip


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 1 or 3)`` or ``(H, W)`` uint8 -> ``(H, W, 3)`` uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"an image must be (H, W), (H, W, 1) or (H, W, 3); got {image.shape}")
    return np.ascontiguousarray(image.astype(np.uint8, copy=False))


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer ``scale`` (pixels stay sharp)."""
    if scale < 1:
        raise ValueError(f"scale={scale} must be a positive integer")
    return image if scale == 1 else image.repeat(scale, 0).repeat(scale, 1)


def put_text(
    image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int] = TEXT, size: float = 0.4
) -> None:
    """Draw ``text`` into ``image`` in place, its baseline at pixel ``(x, y)``."""
    import cv2

    cv2.putText(image, text, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, size, colour, 1, cv2.LINE_AA)


def text_strip(width: int, lines: Sequence[tuple[str, tuple[int, int, int]]], pad: int = 4) -> np.ndarray:
    """A ``(len(lines) * LINE_HEIGHT + pad, width, 3)`` strip with one coloured text line per entry."""
    strip = np.full((len(lines) * LINE_HEIGHT + pad, width, 3), BACKGROUND, np.uint8)
    for i, (text, colour) in enumerate(lines):
        put_text(strip, text, 5, (i + 1) * LINE_HEIGHT - 3, colour)
    return strip


@dataclass
class Series:
    """One state vector in a bar plot: ``values (D,)``, a label for the legend, a colour and whether
    the bars are filled (else outlined)."""

    label: str
    values: np.ndarray
    colour: tuple[int, int, int]
    filled: bool = True


def bar_plot(
    series: Sequence[Series], scale: np.ndarray, height: int = 192, width: int | None = None
) -> np.ndarray:
    """Bars of state vectors, ``(height, width, 3)`` uint8: one group per dimension, one bar per series,
    a bar of length ``value / scale[d]`` of half the height from the zero line (clipped, marked with a
    tick when beyond). ``scale (D,)``: positive per-dimension magnitudes (e.g. the observation bounds)."""
    import cv2

    dims = len(scale)
    width = width if width is not None else max(256, 40 * dims)
    plot = np.full((height, width, 3), BACKGROUND, np.uint8)
    top, bottom = 18, height - 16
    zero = (top + bottom) // 2
    half = (bottom - top) // 2 - 2
    group = width / max(dims, 1)
    nbars = max(len(series), 1)
    bar_w = max(2, int(group * 0.7 / nbars))
    cv2.line(plot, (0, zero), (width - 1, zero), DIM_TEXT, 1)
    for d in range(dims):
        x0 = int(d * group + group * 0.15)
        put_text(plot, f"x{d}", int(d * group + group / 2 - 7), height - 4, DIM_TEXT, 0.35)
        for k, s in enumerate(series):
            value = float(s.values[d]) / float(scale[d])
            length = round(float(np.clip(value, -1.0, 1.0)) * half)
            x = x0 + k * bar_w
            y0, y1 = sorted((zero, zero - length))
            cv2.rectangle(plot, (x, y0), (x + bar_w - 2, y1), s.colour, -1 if s.filled else 1)
            if abs(value) > 1.0:  # beyond the plot: a tick at the edge
                edge = top if value > 0 else bottom
                cv2.line(plot, (x, edge), (x + bar_w - 2, edge), TEXT, 2)
    x = 5
    for s in series:
        put_text(plot, s.label, x, 13, s.colour)
        x += 10 * len(s.label) + 10
    return plot


def panel(body: np.ndarray, title: str, lines: Sequence[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """``body (H, W, 3)`` with a title strip above and text ``lines`` below: ``(HEADER + H + text, W, 3)``."""
    width = body.shape[1]
    header = np.full((HEADER, width, 3), BACKGROUND, np.uint8)
    put_text(header, title, 5, HEADER - 6, TEXT, 0.45)
    return np.concatenate([header, body, text_strip(width, lines)], axis=0)


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def grid(panels: Sequence[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Panels in rows of ``columns`` (padded to a common cell size), ``gap`` pixels apart."""
    if not panels:
        raise ValueError("no panels to draw")
    cell_h = max(p.shape[0] for p in panels)
    cell_w = max(p.shape[1] for p in panels)
    columns = max(1, min(columns, len(panels)))
    rows = []
    for start in range(0, len(panels), columns):
        cells = [_pad_to(p, cell_h, cell_w) for p in panels[start : start + columns]]
        cells += [_pad_to(np.zeros((0, 0, 3), np.uint8), cell_h, cell_w)] * (columns - len(cells))
        spacer = np.full((cell_h, gap, 3), 0, np.uint8)
        row = [cells[0]]
        for cell in cells[1:]:
            row += [spacer, cell]
        rows.append(np.concatenate(row, axis=1))
    stacked = [rows[0]]
    for line in rows[1:]:
        stacked += [np.zeros((gap, line.shape[1], 3), np.uint8), line]
    return np.concatenate(stacked, axis=0)
