"""The registry of the chapter's figures: what each shows, and how to write them all.

Each :class:`FigureSpec` in :data:`FIGURES` names a figure, says in one line what it shows,
and builds it (a small seeded experiment and a call of :mod:`rlhf_toy.presentation.plots`).
Builder modules register themselves with :func:`register`; importing
:mod:`rlhf_toy.presentation.figures` imports all of them, in chapter order.
:func:`write_figures` saves every figure as PNG with an ``index.md`` of what each shows.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from rlhf_toy._validate import check_int

__all__ = ["FIGURES", "FigureSpec", "MAX_DPI", "register", "write_figures"]

#: Largest PNG resolution :func:`write_figures` accepts (a 6.4 x 4 inch figure at 1000 dpi
#: is already 6400 x 4000 pixels).
MAX_DPI = 1000


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the chapter: file stem, what it shows, and how to build it."""

    name: str  # file stem, e.g. "frontier"; the PNG is <name>.png
    caption: str  # one sentence: what the figure shows and why it matters
    section: str  # the chapter section (or notebook) it belongs to
    make: Callable  # () -> matplotlib.figure.Figure, seeded and deterministic


FIGURES: list[FigureSpec] = []


def register(name: str, caption: str, section: str):
    """Decorator adding a figure builder to :data:`FIGURES`.

    Parameters
    ----------
    name : str
        File stem of the PNG; unique.
    caption : str
        One sentence on what the figure shows.
    section : str
        The chapter section (or notebook) it belongs to.

    Returns
    -------
    callable
        The decorator; it returns the builder unchanged.
    """

    def decorate(make):
        if any(spec.name == name for spec in FIGURES):
            raise ValueError(f"figure name {name!r} is registered twice")
        FIGURES.append(FigureSpec(name, caption, section, make))
        return make

    return decorate


def _writable_folder(out) -> Path:
    """``out`` as a folder that exists (created if missing) and accepts files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder, got {str(out)!r}, which is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"out {str(out)!r} is not a writable folder: {reason}") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"out {str(out)!r} is not a writable folder")
    return out


def write_figures(out="figures", names=None, *, dpi: int = 110, verbose: bool = True):
    """Build and save figures as ``<out>/<name>.png`` plus ``<out>/index.md``.

    Parameters
    ----------
    out : str or Path
        Output folder (created if missing).
    names : list of str, optional
        Only these figures; all by default.
    dpi : int
        Resolution of the PNG files, in ``[10, MAX_DPI]`` (1000).
    verbose : bool
        Show a progress bar.

    Returns
    -------
    list of (FigureSpec, Path, float, Figure)
        Each figure written, its path, the seconds it took, and the figure itself.

    Raises
    ------
    ValueError
        If a name is not a registered figure, ``dpi`` is out of range, or ``out`` is not a
        folder this process can create and write to (checked before any figure is built;
        the message names the path).
    """
    dpi = check_int(dpi, "dpi", minimum=10, maximum=MAX_DPI)
    known = {spec.name: spec for spec in FIGURES}
    if names:
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown figure name(s) {unknown}; known: {sorted(known)}")
        specs = [known[n] for n in names]
    else:
        specs = list(FIGURES)
    out = _writable_folder(out)
    written = []
    for spec in tqdm(specs, desc="figures", disable=not verbose):
        t0 = time.perf_counter()
        fig = spec.make()
        path = out / f"{spec.name}.png"
        fig.savefig(path, dpi=dpi)
        written.append((spec, path, time.perf_counter() - t0, fig))
    lines = ["# Figures of rlhf_toy", "", "Regenerate with `rlhf-toy figures --out DIR`.", ""]
    section = None
    for spec, path, _, _ in written:
        if spec.section != section:
            section = spec.section
            lines += [f"## {section}", ""]
        lines += [f"- `{path.name}`: {spec.caption}"]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return written

