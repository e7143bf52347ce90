"""Diagnostic figures and self-contained HTML/Markdown reports (``landscape report``).

:func:`reports.build.build_report` turns a ``landscape verify`` output, a ``landscape train``
run directory or a ``landscape analyze`` output into ``index.html`` (one page, images
embedded, readable on a phone), ``summary.md`` (the same numbers) and ``figures/`` (SVG and
PNG). Data flows one way: :mod:`reports.inputs` reads, :mod:`reports.phases` finds plateaus
and phases, ``reports.fig_*`` draw, ``reports.sections_*`` assemble a
:class:`reports.document.Report`, and :mod:`reports.html` / :mod:`reports.markdown` render it.
"""
