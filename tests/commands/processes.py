"""Process-group helpers shared by the tests that start `stream-monitor run` and stop it."""

import os


def group_alive(pgid: int) -> bool:
    """True while any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
