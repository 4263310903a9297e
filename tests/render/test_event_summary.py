"""The PNG summary of a generated rare-event set renders for every event type (boolean knobs
such as stalled's `reveal` included)."""

import pytest

from drivesim.events import EVENTS
from drivesim.events.summary import plot_event_set
from drivesim.events.generate import LabelConfig, generate_set


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_event_type_png(tmp_path, event):
    es = generate_set(event, 3, seed=0, label=LabelConfig(expert_check=False, workers=1), show_progress=False)
    path = plot_event_set(es.scenarios, es.table, es.header, tmp_path / f"{event}.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
