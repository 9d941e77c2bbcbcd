"""The monitor config: typed schema, unknown keys rejected, errors at their YAML line, reload rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_monitor.config import AlertConfig, FileSource, MonitorConfig, reload_changes
from stream_monitor.config_yaml import ConfigError, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MINIMAL = "version: 1\nstreams:\n  - name: s\n    source: {kind: file, path: clip.mp4}\n"


def _problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return [(p.line, p.location, p.message) for p in info.value.problems]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.example.yaml")), ids=lambda p: p.name)
def test_the_commented_examples_are_valid(path):
    config = load_config(path)
    assert config.streams and config.version == 1


def test_defaults_give_a_working_monitor():
    config = parse_config(MINIMAL)
    assert isinstance(config.streams[0].source, FileSource)
    assert config.alerts == AlertConfig() and config.alerts.threshold is None
    assert config.metrics.port == 9108 and config.transport.results.startswith("tcp://127.0.0.1")
    assert config.overlay is None and config.pipeline.frames_per_stream == 1


def test_unknown_keys_are_errors_that_point_at_the_key():
    text = MINIMAL + "alerts:\n  treshold: 3\n" + "pipeline:\n  max_batch: 4\n  max_wiat_ms: 3\n"
    assert _problems(text) == [
        (6, "alerts.treshold", "unknown key (not part of the schema; check its spelling and indentation)"),
        (9, "pipeline.max_wiat_ms", "unknown key (not part of the schema; check its spelling and indentation)")]


def test_source_fields_are_checked_per_kind_without_the_discriminator_in_the_location():
    problems = _problems("version: 1\nstreams:\n  - name: s\n    source:\n      kind: rtsp\n      url: http://x\n"
                         "  - name: t\n    source: {kind: folder, fps: 0}\n")
    assert (6, "streams[0].source.url", "must start with rtsp:// or rtsps://") in problems
    assert any(p[0] == 8 and p[1] == "streams[1].source.path" and "required" in p[2] for p in problems)
    assert any(p[1] == "streams[1].source.fps" and "greater than 0" in p[2] for p in problems)
    assert _problems("version: 1\nstreams:\n  - name: s\n    source: {kind: hdmi}\n")[0][1] == "streams[0].source"


def test_cross_field_rules():
    assert "enter_n (9) must not exceed enter_m (5)" in _problems(MINIMAL + "alerts: {enter_n: 9, enter_m: 5}\n")[0][2]
    repeated = MINIMAL + "  - name: s\n    source: {kind: camera}\n"
    assert "repeated: s" in _problems(repeated)[0][2]
    assert "not one of the streams" in _problems(MINIMAL + "overlay: {stream: other}\n")[0][2]
    assert "must be below pipeline.ring_slots" in _problems(MINIMAL + "pipeline: {ring_slots: 4, frames_per_stream: 4}\n")[0][2]


def test_yaml_mistakes_duplicates_and_bad_names():
    assert _problems("version: 1\nstreams: [\n")[0][2].startswith("YAML syntax")
    duplicate = _problems(MINIMAL + "alerts:\n  enter_n: 2\n  enter_n: 3\n")
    assert duplicate == [(7, "alerts.enter_n", "duplicate key (first on line 6)")]
    assert _problems("- just a list\n")[0][2].startswith("the file must hold a YAML mapping")
    assert "pattern" in _problems(MINIMAL.replace("name: s", "name: 'bad name/'"))[0][2]


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "sub" / "m.yaml"
    path.parent.mkdir()
    path.write_text(MINIMAL + "audit: {path: logs/a.jsonl}\nmodel: {detector: d.npz}\n")
    config = load_config(path)
    assert config.streams[0].source.path == path.parent / "clip.mp4"
    assert config.audit.path == path.parent / "logs" / "a.jsonl" and config.model.detector == path.parent / "d.npz"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_per_stream_alert_overrides_merge_over_the_global_section():
    config = parse_config(MINIMAL.replace("    source:", "    alerts: {enter_n: 2, smoothing: {method: ema}}\n    source:")
                          + "alerts: {enter_n: 4, enter_m: 6, threshold: 1.5}\n")
    merged = config.alerts_for("s")
    assert (merged.enter_n, merged.enter_m, merged.threshold, merged.smoothing.method) == (2, 6, 1.5, "ema")


def test_reload_applies_alerts_and_logging_and_names_what_needs_a_restart():
    old = parse_config(MINIMAL)
    new = parse_config(MINIMAL + "alerts: {threshold: 3}\nlogging: {level: DEBUG}\nmetrics: {port: 9999}\n")
    assert reload_changes(old, new) == (["alerts", "logging"], ["metrics"])
    per_stream = parse_config(MINIMAL.replace("    source:", "    alerts: {threshold: 2}\n    source:"))
    assert reload_changes(old, per_stream) == (["streams[].alerts"], [])
    moved = parse_config(MINIMAL.replace("clip.mp4", "other.mp4"))
    assert reload_changes(old, moved) == ([], ["streams"])
    assert isinstance(MonitorConfig.model_json_schema(), dict)  # the schema is exportable for editors


def test_the_engine_back_ends_a_config_may_name_are_exactly_the_engine_plugins():
    import typing

    from stream_monitor.config import ModelConfig
    from stream_monitor.engine import list_backends

    choices = set(typing.get_args(ModelConfig.model_fields["backend"].annotation))
    assert choices == {"auto", "torch-cpu-reference", *list_backends()}
    with pytest.raises(ValueError, match="backend"):
        ModelConfig(backend="tensorrtt")
