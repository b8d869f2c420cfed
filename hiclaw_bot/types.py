"""Typed identifiers shared by every layer.

``NewType`` costs nothing at run time but lets mypy catch a room id passed where a user id is due,
the most common slip in Matrix code (mautrix-python does the same).
"""

from __future__ import annotations

from typing import NewType

WorkerName = NewType("WorkerName", str)
TeamName = NewType("TeamName", str)
HumanName = NewType("HumanName", str)
UserId = NewType("UserId", str)
"""A full Matrix user id: ``@alice:example.org``."""
RoomId = NewType("RoomId", str)
"""A Matrix room id: ``!opaque:example.org``."""
RoomAlias = NewType("RoomAlias", str)
"""A full Matrix room alias: ``#hiclaw-worker-alice:example.org``."""
EventId = NewType("EventId", str)
OpId = NewType("OpId", int)
