"""A real PreviewPane, shown offscreen and shut down after the test (preview GUI tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def pane(qtbot: Any) -> Iterator[Any]:
    from vsr_desktop.gui.preview.preview_pane import PreviewPane

    p = PreviewPane()
    qtbot.addWidget(p)
    p.resize(900, 600)
    p.show()
    qtbot.waitExposed(p)
    yield p
    p.shutdown()
