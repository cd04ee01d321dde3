"""Device tags: the one rule for what a tag may be (pure: no I/O).

Written by operators (the API, policies) and matched by filters; one rule
checked wherever a tag is written, so a policy that passes it cannot fail when
a session applies it.
"""

from __future__ import annotations

import re
from typing import Any

TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RULE = "1-64 letters, digits or _.:-"


def tag_problem(tag: Any) -> str | None:
    """Why ``tag`` is not a tag, or None."""
    if not isinstance(tag, str):
        return f"a tag is a string ({RULE}), got {type(tag).__name__}"
    if not TAG.fullmatch(tag):
        return f"invalid tag {tag!r}: {RULE}"
    return None
