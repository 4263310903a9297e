"""Crafted files for the security tests: each would touch a marker file if it were unpickled."""

import pathlib
import pickle


class Touch:
    """Unpickling this calls `pathlib.Path(marker).touch()` (stands for any code a file could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def touch_pickle(marker, wrap=lambda payload: {"payload": payload}) -> bytes:
    return pickle.dumps(wrap(Touch(marker)))


def assert_payload_works(tmp_path) -> None:
    """The payload really runs code under plain pickle (so the tests that refuse it can fail)."""
    marker = tmp_path / "plain_pickle_ran"
    pickle.loads(touch_pickle(marker))
    assert marker.exists()
    marker.unlink()
