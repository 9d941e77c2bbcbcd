"""The alert rules in deploy/prometheus/rules/ pass `promtool check rules` and the unit tests in
deploy/prometheus/tests/ pass `promtool test rules` — every file in those folders, found by glob, so
that a rules/test pair added later (one file per concern) is checked without touching this file."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import RULE_TESTS, RULES, tool

RULE_FILES = sorted(RULES.glob("*.rules.yml"))
TEST_FILES = sorted(RULE_TESTS.glob("*.test.yml"))


def _alert_names(path) -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
            if "alert" in rule}


def test_the_rule_folders_hold_what_the_layout_promises():
    assert RULE_FILES and TEST_FILES
    # Nothing named otherwise that the globs below would silently skip.
    assert sorted(RULES.iterdir()) == RULE_FILES
    assert sorted(RULE_TESTS.iterdir()) == TEST_FILES


@pytest.mark.parametrize("rules", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rules):
    result = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tests", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(tests):
    # promtool resolves rule_files relative to the test file's folder.
    result = subprocess.run([tool("promtool"), "test", "rules", tests.name], cwd=tests.parent, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_expected_to_fire_in_some_unit_test():
    """An alert whose tests only ever expect silence would pass with an expression that can never fire."""
    alerts = set().union(*(_alert_names(p) for p in RULE_FILES))
    fired, tested_files = set(), set()
    for path in TEST_FILES:
        spec = yaml.safe_load(path.read_text())
        tested_files |= {(RULE_TESTS / f).resolve() for f in spec["rule_files"]}
        for case in spec["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts - fired == set(), "alerts no test expects to fire"
    assert {p.resolve() for p in RULE_FILES} <= tested_files, "rules files no test loads"


def test_promtool_fails_when_an_alert_is_broken(tmp_path):
    """The unit tests can fail: with the latency SLO moved from 100 ms to 200 ms the slow stream's
    p99 of 150 ms no longer fires and `promtool test rules` must say so."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    broken = (RULES / "latency.rules.yml").read_text().replace(") > 0.1\n", ") > 0.2\n")
    assert broken != (RULES / "latency.rules.yml").read_text()
    (tmp_path / "rules" / "latency.rules.yml").write_text(broken)
    (tmp_path / "tests" / "latency.test.yml").write_text((RULE_TESTS / "latency.test.yml").read_text())
    result = subprocess.run([tool("promtool"), "test", "rules", "latency.test.yml"], cwd=tmp_path / "tests",
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "StreamMonitorLatencyP99OverSLO" in result.stdout + result.stderr
