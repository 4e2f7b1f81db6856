"""Small builders shared by tests in several packages: archives and images made in memory."""

from __future__ import annotations

import io
import zipfile


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive (stored, not compressed) holding ``members`` (name -> bytes), in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()
