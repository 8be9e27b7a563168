"""Factory ids: short names every party can write in files, logs and messages."""

from __future__ import annotations

import re

from ..errors import UsageError

FACTORY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_factory_id(factory_id: object) -> str:
    """Factory ids are short names of letters, digits, '.', '_' and '-'."""
    if not isinstance(factory_id, str) or not FACTORY_ID_PATTERN.fullmatch(factory_id):
        raise UsageError(
            f"factory id {factory_id!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit", parameters=("factory_id",)
        )
    return factory_id
