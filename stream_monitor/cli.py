"""The `stream-monitor` command: thin sub-commands over the library.

Each sub-command lives in its own module as an `add_arguments(parser)` / `run(args) -> int` pair, so
this file only wires them. Errors that stream-monitor raises on purpose become one clear line and a
non-zero exit status, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import StreamMonitorError

# name → (module, one-line help). Modules are imported only when their command runs, so that
# `stream-monitor --help` stays fast and a missing optional dependency breaks only its own command.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("stream_monitor.commands.train", "fine-tune a classifier on the ID classes (paper recipe)"),
    "fit": ("stream_monitor.commands.fit", "fit a NERO detector on ID features and calibrate its threshold"),
    "eval": ("stream_monitor.commands.eval", "NERO vs every baseline on ID and OOD sets: reports and plots"),
    "explain": ("stream_monitor.commands.explain", "why an image scored as it did: parts, neurons, heatmap"),
    "inspect": ("stream_monitor.commands.inspect", "show what a detector artifact holds"),
    "enroll": ("stream_monitor.commands.enroll", "adapt the detector to a site's confirmed-normal footage"),
    "demo": ("stream_monitor.commands.demo", "the live pipeline end to end on a real ID → OOD → ID clip (CPU)"),
    "run": ("stream_monitor.commands.run", "run the live monitor from a YAML config"),
    "overlay": ("stream_monitor.commands.overlay", "show a running monitor's results: window, MP4, MJPEG page"),
    "validate-config": ("stream_monitor.commands.validate_config", "check monitor config files, errors with line numbers"),
    "keys": ("stream_monitor.commands.keys", "make a CURVE key pair for the ZeroMQ result and frame sockets"),
    "audit": ("stream_monitor.commands.audit", "verify the alert audit log's hash chain (tampering shows)"),
}

EPILOG = """examples:
  stream-monitor demo                           # the live pipeline on a real clip: annotated MP4 + summary
  stream-monitor run --config configs/monitor.example.yaml
  stream-monitor validate-config configs/monitor.example.yaml
  stream-monitor audit verify /var/lib/stream-monitor/alerts.jsonl
  stream-monitor eval --dev-benchmark --out results/dev-benchmark
  stream-monitor explain ../shared/data/hyperkvasir-lgi/polyp/*.jpg --out results/explain
  stream-monitor fit --mode parity --out nero_parity.npz
  stream-monitor inspect stream_monitor/assets/nero_default.npz
  stream-monitor enroll --source /data/site_a/normal_cases/ --out site_a_nero.npz
  stream-monitor COMMAND --help
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `only` a parser in which just that command's module is imported (the
    others are listed with their one-line help): a command then starts without importing torch, timm or
    matplotlib for the commands it does not run — `overlay` and `validate-config` need none of them."""
    parser = argparse.ArgumentParser(
        prog="stream-monitor",
        description="Real-time out-of-distribution monitor for endoscopy video (NERO).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    chosen = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except StreamMonitorError as exc:
        print(f"stream-monitor {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stream-monitor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
