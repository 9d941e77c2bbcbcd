import pytest


@pytest.fixture(autouse=True)
def _no_leaks(no_leaks):
    """Every live-path test must close its sockets, stop its processes and unlink its rings."""
    yield
