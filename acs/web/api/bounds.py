"""The limits of the columns and of Python that request values must fit, as
pydantic types: a value beyond them is a 400 naming its field, never an
overflow in asyncpg or PostgreSQL, and the OpenAPI document states them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

#: a row's bigserial id
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
#: seconds, counts and rates stored in an integer column
Int32 = Annotated[int, Field(le=INT_MAX)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a time without a zone is read as UTC
    try:
        # 9999-12-31T23:59:59-14:00 is past datetime's range once in UTC, which
        # asyncpg sends it as: refused here instead of overflowing there
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


#: a time as timestamptz takes it: aware, in UTC
UtcTime = Annotated[datetime, AfterValidator(_utc)]
