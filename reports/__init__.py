"""Diagnostic figures and self-contained HTML/Markdown reports.

To come (issue: reports): loss curves with plateaus and events, stationarity residuals,
λ_min(Σ_µµ) bands, Hessian spectra, ψ0 on the particles, and the claims table.
"""
