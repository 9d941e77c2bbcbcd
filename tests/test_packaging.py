"""A wheel must carry every sub-package: pyproject lists them by hand (see its comment)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "stream_monitor").rglob("__init__.py")}
    on_disk |= {"stream_monitor.kernels", "stream_monitor.assets"}  # kernels: another folder; assets: data only
    assert on_disk == listed, f"missing: {sorted(on_disk - listed)}, stale: {sorted(listed - on_disk)}"
    assert config["package-dir"]["stream_monitor.kernels"] == "kernels"
