"""Pick a font with Khmer glyphs for charts, with a graceful fallback when none is available.

Matplotlib's default font (DejaVu Sans) has no Khmer glyphs, so a label such as ``ភ្នំពេញ`` would
show as empty boxes. Charts use a family list ``[<your default family>, <a Khmer font>]``: Latin text
keeps your usual font and matplotlib falls back to the Khmer font glyph by glyph. The Khmer font is,
in order: the Noto Sans Khmer font of the ``fontpkg-noto-sans-khmer`` package when it is installed
(OFL-1.1, 180 kB), a well-known Khmer family matplotlib already knows (Noto Sans/Serif Khmer, Khmer
OS, Khmer UI, Khmer Sangam MN...), or any installed font whose character map covers Khmer. With none,
charts still render: a warning is logged once and matplotlib's own missing-glyph warnings are ignored.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

from matplotlib import font_manager, rcParams
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties

logger = logging.getLogger("plasgate_nb")

KHMER = re.compile("[\u1780-\u17ff\u19e0-\u19ff]")
KNOWN_FAMILIES = (
    "Noto Sans Khmer",
    "Noto Serif Khmer",
    "Noto Sans Khmer UI",
    "Khmer OS",
    "Khmer OS System",
    "Khmer OS Content",
    "Khmer UI",
    "Khmer Sangam MN",
    "Khmer MN",
    "Hanuman",
    "Battambang",
    "Kantumruy Pro",
    "Kantumruy",
    "Siemreap",
    "DaunPenh",
    "Leelawadee UI",
)
_PROBE = 0x1780  # KHMER LETTER KA
_GLYPH_WARNING = r"Glyph \d+ .*missing from font"


def has_khmer(text: object) -> bool:
    """Whether ``text`` contains a Khmer character."""
    return isinstance(text, str) and KHMER.search(text) is not None


def _package_font() -> str | None:
    """Register the font of the optional ``fontpkg-noto-sans-khmer`` package; return its family."""
    try:
        import fontpkg_noto_sans_khmer as package  # type: ignore[import-not-found]
    except ImportError:
        return None
    files = sorted(Path(package.ROOT, "files").glob("*.[ot]tf"))
    if not files:
        return None
    for path in files:
        font_manager.fontManager.addfont(str(path))
    return str(getattr(package, "FAMILY", FontProperties(fname=str(files[0])).get_name()))


def _covers_khmer(path: str) -> bool:
    """Whether the font file at ``path`` maps the Khmer letter KA (unreadable files count as no)."""
    from matplotlib.ft2font import FT2Font

    try:
        return _PROBE in FT2Font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False


def _installed_font() -> str | None:
    """A Khmer-capable family among the fonts matplotlib knows: known names first, then a scan."""
    entries = font_manager.fontManager.ttflist
    names = {entry.name for entry in entries}
    for family in KNOWN_FAMILIES:
        if family in names:
            return family
    for entry in entries:
        if _covers_khmer(entry.fname):
            return entry.name
    return None


@functools.cache
def khmer_family() -> str | None:
    """The family name of a font with Khmer glyphs (looked up once per process), or None."""
    family = _package_font() or _installed_font()
    if family is None:
        logger.warning(
            "no font with Khmer glyphs found: Khmer chart labels will show as boxes; "
            "`pip install fontpkg-noto-sans-khmer` (or install a Khmer font) to fix"
        )
    else:
        logger.debug("charts use %r for Khmer text", family)
    return family


def families() -> list[str]:
    """The font family list for chart text: the current default family, then the Khmer font."""
    base = [str(name) for name in rcParams["font.family"]]
    khmer = khmer_family()
    return [*base, khmer] if khmer and khmer not in base else base


def _texts(ax: Axes) -> Iterable[object]:
    """Every text artist of ``ax`` that a chart sets: title, axis labels, annotations, legend."""
    yield ax.title
    yield ax.xaxis.label
    yield ax.yaxis.label
    yield from ax.texts
    legend = ax.get_legend()
    if legend is not None:
        yield legend.get_title()
        yield from legend.get_texts()


def style_text(ax: Axes, labels: Iterable[object] = ()) -> None:
    """Give ``ax``'s texts and tick labels the Khmer-capable family list.

    ``labels`` are the strings shown on the chart (group names); when one of them is Khmer and no
    Khmer font exists, matplotlib's missing-glyph warning is silenced so the chart still renders.
    """
    names = families()
    ax.tick_params(labelfontfamily=names)
    for text in _texts(ax):
        text.set_fontfamily(names)  # type: ignore[attr-defined]
    shown = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(str(v) for v in labels)]
    if khmer_family() is None and any(has_khmer(v) for v in shown):
        warnings.filterwarnings("ignore", message=_GLYPH_WARNING, category=UserWarning)
