"""After enrollment the banner says which evidence fired; without the optional field it is unchanged."""

from stream_monitor.overlay.evidence_label import evidence_label


def test_banner_suffix_names_the_evidence_that_fired():
    assert evidence_label({"evidence": {"fired": ["site", "nero"]}}) == "  [site model + NERO]"
    assert evidence_label({"evidence": {"fired": ["nero"]}}) == "  [NERO]"
    assert evidence_label({"evidence": {"fired": []}}) == ""
    assert evidence_label({}) == ""
