"""Process-group helpers shared by the tests that start `stream-monitor run` and stop it."""

import os


def group_alive(pgid: int) -> bool:
    """True while any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def default_sigint() -> None:
    """Popen preexec_fn: SIGINT back to its default, as for a terminal's foreground job that gets Ctrl-C.

    A test run started in the background by a non-interactive shell inherits SIGINT ignored, Python then
    never installs its KeyboardInterrupt handler, and a Ctrl-C test would measure the shell, not the monitor."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
