"""The catalog as the campaign engine reads it: images, schemes, and device facts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from acs.core import campaigns as rules
from acs.core.firmware import DeviceFacts, Image, Scheme, Verdict, choose_image, fit
from acs.core.versions import IncomparableVersions, VersionError, compare
from acs.core.windows import Window, parse_window
from acs.store import firmware as catalog_store
from acs.store.campaigns import Campaign


@dataclass(slots=True)
class CatalogView:
    """Images and version schemes, loaded once per operation."""

    images: list[Image]
    schemes: dict[tuple[str, str], Scheme] = field(default_factory=dict)

    @classmethod
    async def load(
        cls, conn: asyncpg.Connection, oui: str | None = None, product_class: str | None = None
    ) -> CatalogView:
        images = await catalog_store.list_images(conn, oui, product_class)
        schemes = {(o, p): s for o, p, s in await catalog_store.list_schemes(conn)}
        return cls(images, schemes)

    def scheme(self, oui: str, product_class: str) -> Scheme:
        return self.schemes.get((oui, product_class), Scheme())

    def by_id(self, image_id: int | None) -> Image | None:
        return next((i for i in self.images if i.id == image_id), None)

    def region_parameters(self) -> list[str]:
        return sorted({i.region.parameter for i in self.images if i.region and i.region.parameter})

    def target_for(self, campaign: Campaign, device: DeviceFacts) -> tuple[Image | None, Verdict]:
        """The image ``campaign`` would install on ``device`` now, or why none."""
        scheme = self.scheme(device.oui, device.product_class)
        if campaign.image_id is not None:
            image = self.by_id(campaign.image_id)
            if image is None:
                return None, Verdict(False, "no_image", "the campaign's image left the catalog")
            verdict = fit(image, device, scheme)
            return (image if verdict.ok else None), verdict
        assert campaign.channel is not None
        return choose_image(self.images, device, scheme, campaign.channel)

    def previous_image(self, device: DeviceFacts, version: str) -> Image | None:
        """An image of ``version`` that fits the device, for a rollback."""
        scheme = self.scheme(device.oui, device.product_class)
        for image in self.images:
            if (image.oui, image.product_class) != (device.oui, device.product_class):
                continue
            if device.hardware_version not in image.hardware_versions:
                continue
            if same_version(scheme, image.version, version):
                return image
        return None


def same_version(scheme: Scheme, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return compare(scheme.parse(a), scheme.parse(b)) == 0
    except (VersionError, IncomparableVersions):
        return a.strip() == b.strip()


_FACT_COLUMNS = """
    d.id, d.oui, d.product_class, d.hardware_version, d.software_version,
    d.provisioning_code, d.tags,
    (SELECT jsonb_object_agg(p, dp.tree -> p ->> 'v') FROM unnest({params}::text[]) p)
        AS region_params
"""


def fact_columns(param_placeholder: str) -> str:
    return _FACT_COLUMNS.format(params=param_placeholder)


def facts_from_row(row: asyncpg.Record) -> DeviceFacts:
    params: Any = row["region_params"] or {}
    return DeviceFacts(
        oui=row["oui"],
        product_class=row["product_class"],
        hardware_version=row["hardware_version"],
        software_version=row["software_version"],
        provisioning_code=row["provisioning_code"],
        tags=frozenset(row["tags"]),
        parameters=dict(params),
    )


async def device_facts(
    conn: asyncpg.Connection, device_id: str, region_parameters: Sequence[str]
) -> DeviceFacts | None:
    row = await conn.fetchrow(
        f"SELECT {fact_columns('$2')} FROM devices d"
        " LEFT JOIN device_parameters dp ON dp.device_id = d.id WHERE d.id = $1",
        device_id,
        list(region_parameters),
    )
    return None if row is None else facts_from_row(row)


def stages_of(campaign: Campaign) -> list[rules.Stage]:
    return [stage_from_json(s) for s in campaign.stages]


def stage_from_json(data: dict[str, Any]) -> rules.Stage:
    return rules.Stage(
        size=rules.Amount.parse(data["size"]),
        success=rules.Amount.parse(data.get("successThreshold", "100%")),
        failure=rules.Amount.parse(data.get("failureThreshold", "10%")),
        on_success=data.get("onSuccess", "next"),
        on_failure=data.get("onFailure", "pause"),
    )


def windows_of(campaign: Campaign) -> list[Window]:
    return [window_from_json(w) for w in campaign.windows]


def window_from_json(data: dict[str, Any], *, validate: bool = False) -> Window:
    """Stored windows were validated when the campaign was written; checking that a
    window ever opens costs a search, so only new input pays it."""
    cron, minutes, tz = data["cron"], int(data["durationMinutes"]), data.get("timezone", "UTC")
    return parse_window(cron, minutes, tz) if validate else Window(cron, minutes, tz)


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
