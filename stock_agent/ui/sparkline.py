"""Sparklines: a series as one line of text, in unicode blocks (▁▂▃▄▅▆▇█) or, where the
terminal's encoding cannot show them, in ASCII. Stdlib only, so a table draws them without
numpy or matplotlib.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII = "_.,-=+*#"  # eight levels, lowest first, like BLOCKS


def can_show_blocks(encoding: str | None) -> bool:
    """Whether text in `encoding` can hold the block characters (an unknown encoding: no)."""
    if not encoding:
        return False
    try:
        codecs.lookup(encoding)
        BLOCKS.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def resample(values: Sequence[float], width: int) -> list[float]:
    """`values` brought to `width` points: the mean of each of `width` equal slices when there
    are more values, the values as they are when there are fewer. The last value is kept last."""
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    n = len(values)
    if n <= width:
        return [float(v) for v in values]
    out = []
    for i in range(width):
        start, stop = (i * n) // width, ((i + 1) * n) // width
        chunk = values[start:stop]
        out.append(sum(chunk) / len(chunk))
    return out


def sparkline(
    values: Sequence[float], width: int | None = None, *, ascii_only: bool = False
) -> str:
    """`values` (oldest first) as one character each (or `width` characters at most), scaled
    from their lowest to their highest. Missing or non-finite values are skipped; a flat
    series is a flat line in the middle; nothing to draw is the empty string."""
    ramp = ASCII if ascii_only else BLOCKS
    points = [float(v) for v in values if v is not None and math.isfinite(v)]
    if width is not None:
        points = resample(points, width) if points else []
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return ramp[len(ramp) // 2 - 1] * len(points)
    top = len(ramp) - 1
    return "".join(ramp[round((p - low) / (high - low) * top)] for p in points)


def change(values: Sequence[float]) -> float | None:
    """The change from the first to the last value, as a fraction (None without two values or
    with a first value of zero): what colours a sparkline green or red."""
    points = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(points) < 2 or points[0] == 0:
        return None
    return points[-1] / points[0] - 1.0
