"""The guard every int8 refinement passes: it is never less faithful than what it refines.

A refinement (int8+rewrites refines int8, int8+fallback refines int8+rewrites, int8+fallback+layers refines
int8+fallback) exists to be better; one that ends worse on the tuning samples is dropped with its reason, so
the table never shows a "refined" int8 below plain int8. Compared in order: the accuracy drop (when the tuning
samples are labelled), then top-1 agreement, then SQNR: a higher SQNR does not excuse a lower agreement
(a real CNN's rewrites gave 11.8 dB vs 11.2 dB with agreement 0.56 vs 0.68).
"""

from __future__ import annotations

from edgekiln.compiler.search.judge import Quality, fidelity_key


def never_less_faithful(refined: Quality, base: Quality, base_name: str, samples: int) -> str:
    """'' when `refined` is at least as faithful as `base`; else the reason it is dropped."""
    if fidelity_key(refined) >= fidelity_key(base):
        return ""
    return f"dropped: less faithful than {base_name} on the {samples} tuning samples ({_figures(refined)} vs " \
           f"{_figures(base)})"


def _figures(quality: Quality) -> str:
    parts = [] if quality.accuracy_drop is None else [f"accuracy drop {quality.accuracy_drop:.2f}"]
    parts += [] if quality.agreement is None else [f"top-1 agreement {quality.agreement:.3f}"]
    parts += [] if quality.sqnr_db is None else [f"SQNR {quality.sqnr_db:.1f} dB"]
    return ", ".join(parts) or "no figures"
