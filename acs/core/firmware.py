"""Which catalog image fits which device, and why not (pure: no I/O).

Every refusal is a Verdict with a stable code and a sentence an operator can
act on: the firmware explanation endpoint, campaign admission and the FOTA
check-in all speak through these, so a device is never "up to date" without a
reason anyone can read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from acs.core.versions import IncomparableVersions, Version, VersionError, compare, parse_version

REGION_SOURCES = ("provisioningCode", "tag", "parameter")


@dataclass(frozen=True, slots=True)
class Region:
    """A region or branding scope: the device's ProvisioningCode, one of its tags,
    or a parameter's value must be one of ``values``."""

    name: str
    source: str
    values: tuple[str, ...]
    parameter: str | None = None

    def describe(self) -> str:
        what = f"parameter {self.parameter}" if self.source == "parameter" else self.source
        return f"{self.name} ({what} in {list(self.values)})"


@dataclass(frozen=True, slots=True)
class Scheme:
    """How one product's version strings compare (acs.core.versions)."""

    name: str = "auto"
    pattern: str | None = None

    def parse(self, text: str) -> Version:
        return parse_version(text, self.name, self.pattern)


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    file_name: str
    oui: str
    product_class: str
    hardware_versions: tuple[str, ...]
    version: str
    channel: str = "stable"
    region: Region | None = None
    min_version: str | None = None
    allow_downgrade: bool = False
    release_notes: str = ""
    file_size: int = 0
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the fit of an image depends on, as the device last reported it."""

    oui: str
    product_class: str
    hardware_version: str | None
    software_version: str | None
    provisioning_code: str | None = None
    tags: frozenset[str] = frozenset()
    # values of the parameters region scopes look at
    parameters: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    code: str
    reason: str


def _no(code: str, reason: str) -> Verdict:
    return Verdict(False, code, reason)


def region_value(region: Region, device: DeviceFacts) -> str | None:
    if region.source == "provisioningCode":
        return device.provisioning_code
    if region.source == "parameter" and region.parameter:
        return device.parameters.get(region.parameter)
    return None


def in_region(region: Region | None, device: DeviceFacts) -> bool:
    if region is None:
        return True
    if region.source == "tag":
        return any(v in device.tags for v in region.values)
    return region_value(region, device) in region.values


def _parse(scheme: Scheme, text: str, whose: str) -> Version | Verdict:
    try:
        return scheme.parse(text)
    except VersionError as err:
        return _no("version_unparseable", f"{whose} version {text!r} cannot be parsed: {err}")


def _cmp(a: Version, b: Version) -> int | Verdict:
    try:
        return compare(a, b)
    except IncomparableVersions as err:
        return _no("version_incomparable", f"versions {a.text!r} and {b.text!r}: {err}")


def fit(
    image: Image, device: DeviceFacts, scheme: Scheme, *, downgrade: bool | None = None
) -> Verdict:
    """May ``image`` be installed on ``device`` now? ``downgrade`` overrides the
    image's own allow_downgrade (a rollback goes back on purpose)."""
    if (image.oui, image.product_class) != (device.oui, device.product_class):
        return _no(
            "other_product",
            f"image is for {image.oui}/{image.product_class}, "
            f"device is {device.oui}/{device.product_class}",
        )
    if not device.hardware_version:
        return _no("hardware_unknown", "the device has not reported its HardwareVersion")
    if device.hardware_version not in image.hardware_versions:
        return _no(
            "hardware_mismatch",
            f"hardware {device.hardware_version!r} is not among the image's "
            f"{list(image.hardware_versions)}",
        )
    if not in_region(image.region, device):
        assert image.region is not None
        shown = (
            sorted(device.tags)
            if image.region.source == "tag"
            else region_value(image.region, device)
        )
        return _no(
            "region_mismatch",
            f"image is for region {image.region.describe()}; the device has {shown!r}",
        )
    if not device.software_version:
        return _no("version_unknown", "the device has not reported its SoftwareVersion")
    installed = _parse(scheme, device.software_version, "installed")
    if isinstance(installed, Verdict):
        return installed
    target = _parse(scheme, image.version, "image")
    if isinstance(target, Verdict):
        return target
    order = _cmp(target, installed)
    if isinstance(order, Verdict):
        return order
    if order == 0:
        return _no("same_version", f"the device already runs {device.software_version}")
    may_downgrade = image.allow_downgrade if downgrade is None else downgrade
    if order < 0 and not may_downgrade:
        return _no(
            "not_newer",
            f"image {image.version} is not newer than the installed "
            f"{device.software_version} and does not allow downgrade",
        )
    if image.min_version and order > 0:
        minimum = _parse(scheme, image.min_version, "minimum")
        if isinstance(minimum, Verdict):
            return minimum
        below = _cmp(installed, minimum)
        if isinstance(below, Verdict):
            return below
        if below < 0:
            return _no(
                "needs_stepping_stone",
                f"image {image.version} installs only from {image.min_version} or later; "
                f"the device runs {device.software_version} and needs a stepping stone first",
            )
    return Verdict(True, "offered", f"image {image.version} may be installed")


# When no image of a channel is offered, the verdict shown is that of the image
# closest to being offered: a device that needs a stepping stone matters more
# to an operator than one whose hardware simply differs.
_RELEVANCE = [
    "needs_stepping_stone",
    "same_version",
    "not_newer",
    "version_incomparable",
    "version_unparseable",
    "version_unknown",
    "region_mismatch",
    "hardware_mismatch",
    "hardware_unknown",
    "other_product",
]


def newest(images: Iterable[Image], scheme: Scheme) -> list[Image]:
    """Images sorted newest first; unparseable or incomparable ones last."""
    parsed: list[tuple[Image, Version | None]] = []
    for image in images:
        try:
            parsed.append((image, scheme.parse(image.version)))
        except VersionError:
            parsed.append((image, None))
    ok = [(i, v) for i, v in parsed if v is not None]
    bad = [i for i, v in parsed if v is None]
    result: list[tuple[Image, Version]] = []
    for image, version in ok:  # insertion sort: compare() may refuse a pair
        at = len(result)
        for pos, (_, other) in enumerate(result):
            try:
                if compare(version, other) > 0:
                    at = pos
                    break
            except IncomparableVersions:
                continue
        result.insert(at, (image, version))
    return [i for i, _ in result] + bad


def choose_image(
    images: Sequence[Image], device: DeviceFacts, scheme: Scheme, channel: str
) -> tuple[Image | None, Verdict]:
    """The newest image of ``channel`` the device may install now: never an older one
    ("latest" means latest, whatever an image's allow_downgrade says).

    When a newer image needs a stepping stone, an older offered image that is
    still newer than the installed version is chosen: the device climbs one hop
    per campaign round.
    """
    candidates = [i for i in images if i.channel == channel]
    if not candidates:
        return None, _no("no_image", f"the catalog has no image in channel {channel!r}")
    verdicts = [
        (image, fit(image, device, scheme, downgrade=False)) for image in newest(candidates, scheme)
    ]
    for position, (image, verdict) in enumerate(verdicts):
        if not verdict.ok:
            continue
        blocked = [i for i, v in verdicts[:position] if v.code == "needs_stepping_stone"]
        if blocked:
            return image, Verdict(
                True,
                "stepping_stone",
                f"stepping stone {image.version} first; {blocked[0].version} needs "
                f"{blocked[0].min_version} or later",
            )
        return image, verdict
    best = min(verdicts, key=lambda iv: _RELEVANCE.index(iv[1].code))
    return None, best[1]
