"""One module per `stream-monitor` sub-command: `add_arguments(parser)` and `run(args) -> int`."""
