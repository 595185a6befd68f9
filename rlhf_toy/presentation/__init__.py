"""Presentation: the chapter's figures and the command that regenerates them.

- :mod:`rlhf_toy.presentation.plots`: figure functions (results in, Figure out), one module
  per chapter section;
- :mod:`rlhf_toy.presentation.figures`: the registry of the chapter's figures and their
  builders (each runs a small seeded experiment and calls a plot).
"""

#: The figures are in the submodules; the package itself exports nothing.
__all__ = []
