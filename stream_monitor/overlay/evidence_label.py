"""After site enrollment the banner says which evidence fired: the site model (this view is unlike the
site's enrolled normal footage), NERO (unlike the classifier's training classes), or both."""

from __future__ import annotations

__all__ = ["evidence_label"]

_NAMES = {"site": "site model", "nero": "NERO"}


def evidence_label(result: dict) -> str:
    """'  [site model + NERO]' style suffix for the banner; '' without evidence or when none fired."""
    evidence = result.get("evidence")
    if not evidence or not evidence.get("fired"):
        return ""
    return "  [" + " + ".join(_NAMES.get(name, name) for name in evidence["fired"]) + "]"
