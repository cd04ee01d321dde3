"""Pure firmware and campaign rules: which image fits which device, and what a
campaign does next (acs.core.firmware, acs.core.campaigns). No DB, no network."""

from __future__ import annotations

from dataclasses import replace

import pytest

from acs.core.campaigns import (
    POWER_LOSS,
    Amount,
    CampaignError,
    Decision,
    Stage,
    StageCounts,
    audience_order,
    cutoffs,
    decide,
    is_transient,
    retry_delay,
    stage_of,
)
from acs.core.firmware import (
    DeviceFacts,
    Image,
    Region,
    Scheme,
    Verdict,
    choose_image,
    fit,
    in_region,
    newest,
)

OUI = "A0B1C2"
PRODUCT = "MF286D"
HW = "MF286D-V1"
AUTO = Scheme()
SEMVER = Scheme("semver")
RELEASE_PATTERN = r"R(?P<major>\d+)\.(?P<minor>\d+)-(?P<build>\d+)"
REGEX = Scheme("regex", RELEASE_PATTERN)
REGION_PARAM = "Device.X_VENDOR_Region"


def image(version: str, image_id: int = 1, **overrides: object) -> Image:
    values: dict[str, object] = {
        "id": image_id,
        "file_name": f"fw-{version}.bin",
        "oui": OUI,
        "product_class": PRODUCT,
        "hardware_versions": (HW,),
        "version": version,
    }
    values.update(overrides)
    return Image(**values)  # type: ignore[arg-type]


def device(software: str | None = "V1.0.0B05", **overrides: object) -> DeviceFacts:
    values: dict[str, object] = {
        "oui": OUI,
        "product_class": PRODUCT,
        "hardware_version": HW,
        "software_version": software,
    }
    values.update(overrides)
    return DeviceFacts(**values)  # type: ignore[arg-type]


def catalog(*versions: str, channel: str = "stable", **overrides: object) -> list[Image]:
    return [
        image(v, image_id=n, channel=channel, **overrides) for n, v in enumerate(versions, start=1)
    ]


# --- Region / in_region -------------------------------------------------------

PROVISIONING_EU = Region("EU", "provisioningCode", ("EU", "UK"))
TAG_BRAND_A = Region("brand A", "tag", ("brand-a", "brand-a-legacy"))
PARAM_EMEA = Region("EMEA", "parameter", ("EMEA",), parameter=REGION_PARAM)


def test_no_region_means_everywhere() -> None:
    assert in_region(None, device())
    assert in_region(None, device(provisioning_code="US", tags=frozenset({"x"})))


@pytest.mark.parametrize(
    ("region", "facts", "inside"),
    [
        (PROVISIONING_EU, {"provisioning_code": "EU"}, True),
        (PROVISIONING_EU, {"provisioning_code": "UK"}, True),
        (PROVISIONING_EU, {"provisioning_code": "US"}, False),
        (PROVISIONING_EU, {"provisioning_code": None}, False),
        # the code is compared exactly
        (PROVISIONING_EU, {"provisioning_code": "eu"}, False),
        (TAG_BRAND_A, {"tags": frozenset({"lab", "brand-a"})}, True),
        (TAG_BRAND_A, {"tags": frozenset({"brand-a-legacy"})}, True),
        (TAG_BRAND_A, {"tags": frozenset({"brand-b"})}, False),
        (TAG_BRAND_A, {"tags": frozenset()}, False),
        (PARAM_EMEA, {"parameters": {REGION_PARAM: "EMEA"}}, True),
        (PARAM_EMEA, {"parameters": {REGION_PARAM: "APAC"}}, False),
        (PARAM_EMEA, {"parameters": {REGION_PARAM: None}}, False),
        (PARAM_EMEA, {"parameters": {}}, False),
        # a tag is not a provisioning code and vice versa
        (PROVISIONING_EU, {"tags": frozenset({"EU"})}, False),
        (TAG_BRAND_A, {"provisioning_code": "brand-a"}, False),
        (PARAM_EMEA, {"provisioning_code": "EMEA", "tags": frozenset({"EMEA"})}, False),
    ],
)
def test_in_region_per_source(region: Region, facts: dict[str, object], inside: bool) -> None:
    assert in_region(region, device(**facts)) is inside


def test_parameter_region_without_a_parameter_name_matches_nothing() -> None:
    region = Region("broken", "parameter", ("EMEA",))
    assert not in_region(region, device(parameters={REGION_PARAM: "EMEA"}))


def test_region_describe_names_its_source() -> None:
    assert PROVISIONING_EU.describe() == "EU (provisioningCode in ['EU', 'UK'])"
    assert TAG_BRAND_A.describe() == "brand A (tag in ['brand-a', 'brand-a-legacy'])"
    assert PARAM_EMEA.describe() == f"EMEA (parameter {REGION_PARAM} in ['EMEA'])"


# --- fit: refusals before versions ------------------------------------------------


@pytest.mark.parametrize(
    "facts",
    [{"oui": "FFEEDD"}, {"product_class": "MF289F"}, {"oui": "FFEEDD", "product_class": "X"}],
)
def test_other_product(facts: dict[str, object]) -> None:
    verdict = fit(image("V1.0.0B09"), device("V1.0.0B05", **facts), AUTO)
    assert verdict == Verdict(False, "other_product", verdict.reason)
    assert not verdict.ok
    assert f"{OUI}/{PRODUCT}" in verdict.reason


def test_other_product_is_checked_before_anything_else() -> None:
    verdict = fit(
        image("V1.0.0B09", region=PROVISIONING_EU),
        device(None, oui="FFEEDD", hardware_version=None),
        AUTO,
    )
    assert verdict.code == "other_product"


@pytest.mark.parametrize("hardware", [None, ""])
def test_hardware_unknown(hardware: str | None) -> None:
    verdict = fit(image("V1.0.0B09"), device("V1.0.0B05", hardware_version=hardware), AUTO)
    assert (verdict.ok, verdict.code) == (False, "hardware_unknown")
    assert "HardwareVersion" in verdict.reason


def test_hardware_mismatch_names_both_sides() -> None:
    img = image("V1.0.0B09", hardware_versions=("MF286D-V1", "MF286D-V2"))
    verdict = fit(img, device("V1.0.0B05", hardware_version="MF286D-V3"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "hardware_mismatch")
    assert "'MF286D-V3'" in verdict.reason
    assert "MF286D-V2" in verdict.reason


def test_any_listed_hardware_version_fits() -> None:
    img = image("V1.0.0B09", hardware_versions=("MF286D-V1", "MF286D-V2"))
    assert fit(img, device("V1.0.0B05", hardware_version="MF286D-V2"), AUTO).ok


def test_hardware_is_checked_before_region_and_version() -> None:
    verdict = fit(
        image("V1.0.0B09", region=PROVISIONING_EU),
        device(None, hardware_version="other", provisioning_code="US"),
        AUTO,
    )
    assert verdict.code == "hardware_mismatch"


@pytest.mark.parametrize(
    ("region", "facts", "shown"),
    [
        (PROVISIONING_EU, {"provisioning_code": "US"}, "'US'"),
        (PROVISIONING_EU, {"provisioning_code": None}, "None"),
        (TAG_BRAND_A, {"tags": frozenset({"brand-b", "lab"})}, "['brand-b', 'lab']"),
        (PARAM_EMEA, {"parameters": {REGION_PARAM: "APAC"}}, "'APAC'"),
        (PARAM_EMEA, {"parameters": {}}, "None"),
    ],
)
def test_region_mismatch_for_each_source(
    region: Region, facts: dict[str, object], shown: str
) -> None:
    verdict = fit(image("V1.0.0B09", region=region), device("V1.0.0B05", **facts), AUTO)
    assert (verdict.ok, verdict.code) == (False, "region_mismatch")
    assert region.describe() in verdict.reason
    assert verdict.reason.endswith(f"the device has {shown}")


@pytest.mark.parametrize(
    ("region", "facts"),
    [
        (PROVISIONING_EU, {"provisioning_code": "UK"}),
        (TAG_BRAND_A, {"tags": frozenset({"brand-a"})}),
        (PARAM_EMEA, {"parameters": {REGION_PARAM: "EMEA"}}),
    ],
)
def test_in_region_image_is_offered(region: Region, facts: dict[str, object]) -> None:
    verdict = fit(image("V1.0.0B09", region=region), device("V1.0.0B05", **facts), AUTO)
    assert (verdict.ok, verdict.code) == (True, "offered")


def test_region_is_checked_before_the_version() -> None:
    verdict = fit(image("V1.0.0B09", region=PROVISIONING_EU), device(None), AUTO)
    assert verdict.code == "region_mismatch"


# --- fit: versions ----------------------------------------------------------------


@pytest.mark.parametrize("software", [None, ""])
def test_version_unknown(software: str | None) -> None:
    verdict = fit(image("V1.0.0B09"), device(software), AUTO)
    assert (verdict.ok, verdict.code) == (False, "version_unknown")
    assert "SoftwareVersion" in verdict.reason


def test_installed_version_unparseable() -> None:
    verdict = fit(image("V1.0.0B09"), device("unknown"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "version_unparseable")
    assert verdict.reason.startswith("installed version 'unknown'")


def test_image_version_unparseable() -> None:
    verdict = fit(image("nightly"), device("V1.0.0B05"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "version_unparseable")
    assert verdict.reason.startswith("image version 'nightly'")


def test_semver_scheme_refuses_vendor_strings_as_unparseable() -> None:
    verdict = fit(image("2.4.1"), device("2.4"), SEMVER)
    assert verdict.code == "version_unparseable"
    assert "installed" in verdict.reason


def test_version_incomparable_between_product_lines() -> None:
    verdict = fit(image("BD_OTHERV1.0.0B09"), device("BD_3UKMF286DV1.0.0B05"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "version_incomparable")
    assert "BD_OTHERV1.0.0B09" in verdict.reason
    assert "BD_3UKMF286DV1.0.0B05" in verdict.reason


def test_version_incomparable_is_not_rescued_by_allowing_downgrade() -> None:
    img = image("BD_OTHERV1.0.0B01", allow_downgrade=True)
    verdict = fit(img, device("BD_3UKMF286DV1.0.0B05"), AUTO, downgrade=True)
    assert verdict.code == "version_incomparable"


@pytest.mark.parametrize(
    ("installed", "target"),
    [
        ("V1.0.0B09", "V1.0.0B09"),
        ("1.2", "1.2.0"),  # the same firmware written twice
        ("BD_3UKMF286DV1.0.0B09", "V1.0.0B09"),  # bare version of the same image
        ("bd_3ukmf286dv1.0.0b09", "BD_3UKMF286DV1.0.0B09"),  # vendors do not keep case
    ],
)
def test_same_version(installed: str, target: str) -> None:
    verdict = fit(image(target), device(installed), AUTO)
    assert (verdict.ok, verdict.code) == (False, "same_version")
    assert installed in verdict.reason


def test_same_version_even_when_downgrade_is_forced() -> None:
    verdict = fit(
        image("V1.0.0B09", allow_downgrade=True), device("V1.0.0B09"), AUTO, downgrade=True
    )
    assert verdict.code == "same_version"


@pytest.mark.parametrize(
    ("installed", "target", "scheme"),
    [
        ("V1.0.0B05", "V1.0.0B09", AUTO),
        ("BD_3UKMF286DV1.0.0B05", "BD_3UKMF286DV1.0.0B09", AUTO),
        ("V1.0.0B05", "BD_3UKMF286DV1.0.0B09", AUTO),
        ("2.4.1-rc2", "2.4.1", AUTO),
        ("2.4.1-rc2", "2.4.1-rc10", AUTO),
        ("1.9", "1.10", AUTO),
        ("2.4.1-rc.2", "2.4.1", SEMVER),
        ("2.4.1-rc.2", "2.4.1-rc.10", SEMVER),
        ("1.9.0", "1.10.0", SEMVER),
        ("R5.9-0017", "R5.10-0003", REGEX),
        ("R5.10-0003", "R5.10-0004", REGEX),
    ],
)
def test_newer_image_is_offered_and_older_is_not_newer(
    installed: str, target: str, scheme: Scheme
) -> None:
    up = fit(image(target), device(installed), scheme)
    assert up == Verdict(True, "offered", f"image {target} may be installed")

    down = fit(image(installed), device(target), scheme)
    assert (down.ok, down.code) == (False, "not_newer")
    assert installed in down.reason and target in down.reason
    assert "downgrade" in down.reason


def test_plain_text_order_is_not_used() -> None:
    # "1.10" < "1.9" and "2.4.1-rc2" > "2.4.1" as text: both would be wrong here
    assert fit(image("1.9"), device("1.10"), AUTO).code == "not_newer"
    assert fit(image("2.4.1-rc2"), device("2.4.1"), AUTO).code == "not_newer"


def test_downgrade_allowed_by_the_image() -> None:
    verdict = fit(image("V1.0.0B05", allow_downgrade=True), device("V1.0.0B09"), AUTO)
    assert (verdict.ok, verdict.code) == (True, "offered")


def test_downgrade_allowed_by_the_override() -> None:
    img = image("V1.0.0B05")
    assert fit(img, device("V1.0.0B09"), AUTO).code == "not_newer"
    verdict = fit(img, device("V1.0.0B09"), AUTO, downgrade=True)
    assert (verdict.ok, verdict.code) == (True, "offered")


def test_override_can_forbid_a_downgrade_the_image_allows() -> None:
    img = image("V1.0.0B05", allow_downgrade=True)
    verdict = fit(img, device("V1.0.0B09"), AUTO, downgrade=False)
    assert verdict.code == "not_newer"


def test_downgrade_flag_does_not_block_an_upgrade() -> None:
    verdict = fit(image("V1.0.0B09"), device("V1.0.0B05"), AUTO, downgrade=False)
    assert verdict.code == "offered"


def test_needs_stepping_stone_below_min_version() -> None:
    img = image("V1.2.0B01", min_version="V1.1.0B01")
    verdict = fit(img, device("V1.0.0B09"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "needs_stepping_stone")
    assert "V1.1.0B01" in verdict.reason and "V1.0.0B09" in verdict.reason


@pytest.mark.parametrize("installed", ["V1.1.0B01", "V1.1.0B02", "BD_3UKMF286DV1.1.5B01"])
def test_min_version_reached_is_offered(installed: str) -> None:
    img = image("V1.2.0B01", min_version="V1.1.0B01")
    assert fit(img, device(installed), AUTO).code == "offered"


def test_min_version_with_semver_and_prereleases() -> None:
    img = image("3.0.0", min_version="2.4.1")
    assert fit(img, device("2.4.1-rc.2"), SEMVER).code == "needs_stepping_stone"
    assert fit(img, device("2.4.1"), SEMVER).code == "offered"


def test_min_version_with_regex_scheme() -> None:
    img = image("R6.0-0001", min_version="R5.10-0000")
    assert fit(img, device("R5.9-0017"), REGEX).code == "needs_stepping_stone"
    assert fit(img, device("R5.10-0003"), REGEX).code == "offered"


def test_unparseable_min_version() -> None:
    verdict = fit(image("V1.2.0B01", min_version="latest"), device("V1.0.0B09"), AUTO)
    assert (verdict.ok, verdict.code) == (False, "version_unparseable")
    assert verdict.reason.startswith("minimum version 'latest'")


def test_incomparable_min_version() -> None:
    img = image("BD_3UKMF286DV1.2.0B01", min_version="BD_OTHERV1.1.0B01")
    verdict = fit(img, device("BD_3UKMF286DV1.0.0B09"), AUTO)
    assert verdict.code == "version_incomparable"


def test_same_version_wins_over_a_min_version() -> None:
    img = image("V1.2.0B01", min_version="V1.1.0B01")
    assert fit(img, device("V1.2.0B01"), AUTO).code == "same_version"


# --- newest ----------------------------------------------------------------------


def versions_of(images: list[Image]) -> list[str]:
    return [i.version for i in images]


def test_newest_orders_newest_first() -> None:
    images = catalog("1.9", "2.4.1-rc2", "1.10", "2.4.1", "2.4.1-rc10", "1.10.1")
    assert versions_of(newest(images, AUTO)) == [
        "2.4.1",
        "2.4.1-rc10",
        "2.4.1-rc2",
        "1.10.1",
        "1.10",
        "1.9",
    ]


def test_newest_with_vendor_builds() -> None:
    images = catalog("V1.0.0B05", "BD_3UKMF286DV1.0.0B09", "V1.0.0B07", "V1.1.0B01")
    assert versions_of(newest(images, AUTO)) == [
        "V1.1.0B01",
        "BD_3UKMF286DV1.0.0B09",
        "V1.0.0B07",
        "V1.0.0B05",
    ]


def test_newest_puts_unparseable_last_in_input_order() -> None:
    images = catalog("nightly", "1.9", "latest", "1.10")
    assert versions_of(newest(images, AUTO)) == ["1.10", "1.9", "nightly", "latest"]


def test_newest_under_semver_puts_non_semver_last() -> None:
    images = catalog("2.4", "2.4.1-rc.2", "2.4.1", "v2.5.0")
    assert versions_of(newest(images, SEMVER)) == ["v2.5.0", "2.4.1", "2.4.1-rc.2", "2.4"]


def test_newest_with_regex_scheme() -> None:
    images = catalog("R5.9-0017", "R5.10-0003", "garbage", "R5.10-0001")
    assert versions_of(newest(images, REGEX)) == [
        "R5.10-0003",
        "R5.10-0001",
        "R5.9-0017",
        "garbage",
    ]


def test_newest_keeps_equal_versions_in_input_order() -> None:
    images = catalog("1.2", "1.2.0", "1.3")
    assert [i.id for i in newest(images, AUTO)] == [3, 1, 2]


def test_newest_of_nothing() -> None:
    assert newest([], AUTO) == []


def test_newest_does_not_crash_on_incomparable_product_lines() -> None:
    images = catalog("BD_AV1.0", "BD_BV2.0", "BD_AV1.1")
    ordered = newest(images, AUTO)
    assert sorted(i.id for i in ordered) == [1, 2, 3]
    a_line = [i.version for i in ordered if i.version.startswith("BD_A")]
    assert a_line == ["BD_AV1.1", "BD_AV1.0"]


# --- choose_image -------------------------------------------------------------------


def test_choose_picks_the_newest_offered_image_of_the_channel() -> None:
    images = catalog("1.9", "1.10", "1.10-rc1", "1.8")
    chosen, verdict = choose_image(images, device("1.8"), AUTO, "stable")
    assert chosen is not None and chosen.version == "1.10"
    assert verdict == Verdict(True, "offered", "image 1.10 may be installed")


def test_choose_ignores_other_channels() -> None:
    images = catalog("1.9", "1.10") + catalog("2.0-beta1", channel="beta")
    chosen, _ = choose_image(images, device("1.8"), AUTO, "stable")
    assert chosen is not None and chosen.version == "1.10"

    chosen, verdict = choose_image(images, device("1.8"), AUTO, "beta")
    assert chosen is not None and chosen.version == "2.0-beta1"
    assert verdict.code == "offered"


def test_choose_skips_images_that_do_not_fit() -> None:
    images = [
        image("1.12", 1, hardware_versions=("MF286D-V2",)),
        image("1.11", 2, region=PROVISIONING_EU),
        image("1.10", 3),
    ]
    chosen, verdict = choose_image(images, device("1.9", provisioning_code="US"), AUTO, "stable")
    assert chosen is not None and chosen.id == 3
    assert verdict.code == "offered"


@pytest.mark.parametrize("images", [[], catalog("2.0", channel="beta")])
def test_empty_channel_is_no_image(images: list[Image]) -> None:
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is None
    assert (verdict.ok, verdict.code) == (False, "no_image")
    assert "'stable'" in verdict.reason


def test_stepping_stone_when_the_newest_needs_a_min_version() -> None:
    images = [
        image("V1.0.0B09", 1),
        image("V1.1.0B02", 2),
        image("V1.2.0B01", 3, min_version="V1.1.0B01"),
    ]
    chosen, verdict = choose_image(images, device("V1.0.0B09"), AUTO, "stable")
    assert chosen is not None and chosen.id == 2
    assert (verdict.ok, verdict.code) == (True, "stepping_stone")
    assert "V1.1.0B02" in verdict.reason
    assert "V1.2.0B01" in verdict.reason and "V1.1.0B01" in verdict.reason

    # one hop later the device reaches the newest image
    chosen, verdict = choose_image(images, device("V1.1.0B02"), AUTO, "stable")
    assert chosen is not None and chosen.id == 3
    assert verdict.code == "offered"


def test_stepping_stone_is_the_newest_installable_hop() -> None:
    images = catalog("2.0", "1.5", "1.6", "3.0")
    images[-1] = replace(images[-1], min_version="2.0")
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is not None and chosen.version == "2.0"
    assert verdict.code == "stepping_stone"


def test_stepping_stone_needed_but_none_in_the_catalog() -> None:
    images = [image("V1.0.0B05", 1), image("V1.2.0B01", 2, min_version="V1.1.0B01")]
    chosen, verdict = choose_image(images, device("V1.0.0B09"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "needs_stepping_stone"


def test_nothing_offered_needs_stepping_stone_beats_hardware_mismatch() -> None:
    images = [
        image("1.3", 1, hardware_versions=("MF286D-V2",)),  # newest, other hardware
        image("1.2", 2, min_version="1.1"),
        image("1.1", 3, hardware_versions=("MF286D-V2",)),  # the stone, other hardware
    ]
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is None
    assert (verdict.ok, verdict.code) == (False, "needs_stepping_stone")


def test_nothing_offered_same_version_when_the_device_runs_the_newest() -> None:
    images = catalog("1.9", "1.10", "1.8")
    chosen, verdict = choose_image(images, device("1.10"), AUTO, "stable")
    assert chosen is None
    assert (verdict.ok, verdict.code) == (False, "same_version")


def test_nothing_offered_not_newer_when_the_device_is_ahead() -> None:
    chosen, verdict = choose_image(catalog("1.9", "1.10"), device("2.0"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "not_newer"


def test_nothing_offered_region_mismatch_beats_hardware_mismatch() -> None:
    images = [
        image("2.0", 1, hardware_versions=("MF286D-V2",)),
        image("1.5", 2, region=TAG_BRAND_A),
    ]
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "region_mismatch"


def test_nothing_offered_hardware_mismatch_beats_other_product() -> None:
    images = [image("2.0", 1, oui="FFEEDD"), image("1.5", 2, hardware_versions=("X",))]
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "hardware_mismatch"


def test_nothing_offered_version_unknown() -> None:
    chosen, verdict = choose_image(catalog("1.9", "1.10"), device(None), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "version_unknown"


def test_nothing_offered_version_incomparable_beats_unparseable() -> None:
    images = [image("nightly", 1), image("BD_OTHERV1.1", 2)]
    chosen, verdict = choose_image(images, device("BD_3UKMF286DV1.0"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "version_incomparable"


def test_choose_with_semver_scheme() -> None:
    images = catalog("2.4.1-rc.2", "2.4.1", "2.4.0", "2.5.0-beta.1", channel="stable")
    chosen, verdict = choose_image(images, device("2.4.0"), SEMVER, "stable")
    assert chosen is not None and chosen.version == "2.5.0-beta.1"
    assert verdict.code == "offered"


def test_unparseable_images_do_not_hide_an_offered_one() -> None:
    images = catalog("nightly", "V1.0.0B09")
    chosen, verdict = choose_image(images, device("V1.0.0B05"), AUTO, "stable")
    assert chosen is not None and chosen.version == "V1.0.0B09"
    assert verdict.code == "offered"


def test_choose_does_not_downgrade_a_device_running_the_channels_newest() -> None:
    images = [image("2.0", 1), image("1.0", 2, allow_downgrade=True)]
    chosen, verdict = choose_image(images, device("2.0"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "same_version"


def test_stepping_stone_is_never_a_downgrade() -> None:
    images = [image("2.0", 1, min_version="1.8"), image("1.0", 2, allow_downgrade=True)]
    chosen, verdict = choose_image(images, device("1.5"), AUTO, "stable")
    assert chosen is None
    assert verdict.code == "needs_stepping_stone"


def test_stepping_stone_label_ignores_images_for_other_hardware() -> None:
    images = [
        image("3.0", 1, hardware_versions=("MF286D-V2",)),
        image("2.0", 2, min_version="1.5"),
        image("1.2", 3),
    ]
    chosen, verdict = choose_image(images, device("1.0"), AUTO, "stable")
    assert chosen is not None and chosen.version == "1.2"
    assert verdict.code == "stepping_stone"


# --- Amount ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "percent"),
    [
        ("10%", 10.0, True),
        ("100%", 100.0, True),
        ("0%", 0.0, True),
        ("2.5%", 2.5, True),
        ("25", 25.0, False),
        (25, 25.0, False),
        (0, 0.0, False),
        ("0", 0.0, False),
        (" 5 % ", 5.0, True),
        ("10 %", 10.0, True),
        ("  7  ", 7.0, False),
        ("3.0", 3.0, False),  # a whole number written with a decimal point
    ],
)
def test_amount_parse_accepts(text: str | int, value: float, percent: bool) -> None:
    assert Amount.parse(text) == Amount(value, percent)


@pytest.mark.parametrize(
    "text",
    [
        "101%",
        "100.5%",
        "abc",
        "",
        "   ",
        "%",
        "2.5",
        "-5",
        "-5%",
        -5,
        "10%%",
        "% 10",
        "1e3",
        "ten",
        "10 devices",
        "1,5%",
    ],
)
def test_amount_parse_rejects(text: str | int) -> None:
    with pytest.raises(CampaignError):
        Amount.parse(text)


def test_campaign_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="over 100%"):
        Amount.parse("101%")
    with pytest.raises(ValueError, match="whole number"):
        Amount.parse("2.5")


@pytest.mark.parametrize(
    ("text", "total", "count"),
    [
        ("1%", 50, 1),  # rounds up: never none
        ("10%", 205, 21),
        ("10%", 200, 20),
        ("10%", 0, 0),
        ("0%", 1000, 0),
        ("100%", 7, 7),
        ("50%", 3, 2),
        ("1%", 1, 1),
        ("2.5%", 200, 5),
        ("2.5%", 201, 6),
        ("25", 100, 25),
        ("0", 100, 0),
    ],
)
def test_amount_of(text: str, total: int, count: int) -> None:
    assert Amount.parse(text).of(total) == count


@pytest.mark.parametrize(("text", "total", "count"), [("1.1%", 3000, 33), ("8.3%", 3000, 249)])
def test_fractional_share_is_exact(text: str, total: int, count: int) -> None:
    assert Amount.parse(text).of(total) == count


@pytest.mark.parametrize(("text", "shown"), [("10%", "10%"), ("2.5%", "2.5%"), ("25", "25")])
def test_amount_str_round_trips(text: str, shown: str) -> None:
    assert str(Amount.parse(text)) == shown
    assert Amount.parse(str(Amount.parse(text))) == Amount.parse(text)


# --- cutoffs / stage_of / audience_order -----------------------------------------------


# Thresholds are always given explicitly, parsed as stage_from_json does: the
# dataclass defaults are covered (and found wanting) by their own test below.
SUCCESS_ALL = Amount.parse("100%")
FAILURE_10 = Amount.parse("10%")


def stage(size: str, **options: object) -> Stage:
    options.setdefault("success", SUCCESS_ALL)
    options.setdefault("failure", FAILURE_10)
    return Stage(Amount.parse(size), **options)  # type: ignore[arg-type]


def stages(*sizes: str, **common: object) -> list[Stage]:
    return [stage(s, **common) for s in sizes]


@pytest.mark.parametrize(
    ("sizes", "audience", "bounds"),
    [
        (("1%", "10%", "100%"), 1000, [10, 100, 1000]),
        (("1%", "10%", "100%"), 50, [1, 5, 50]),
        (("1%", "10%", "100%"), 0, [0, 0, 0]),
        (("1%", "10%", "100%"), 1, [1, 1, 1]),
        (("5", "25", "100%"), 10, [5, 10, 10]),  # counts are capped at the audience
        (("2000",), 100, [100]),
        (("50%", "10%", "100%"), 1000, [500, 500, 1000]),  # never decreasing
        (("50", "10"), 1000, [50, 50]),
        (("10", "50%"), 1000, [10, 500]),  # counts and shares mix
        (("1%", "10%"), 1000, [10, 100]),  # last stage under 100%
    ],
)
def test_cutoffs(sizes: tuple[str, ...], audience: int, bounds: list[int]) -> None:
    result = cutoffs(stages(*sizes), audience)
    assert result == bounds
    assert all(a <= b for a, b in zip(result, result[1:], strict=False))
    assert all(b <= audience for b in result)


def test_cutoffs_of_no_stages() -> None:
    assert cutoffs([], 100) == []


@pytest.mark.parametrize(
    ("position", "stage"),
    [(0, 0), (1, 1), (4, 1), (5, 2), (49, 2), (50, None), (1000, None)],
)
def test_stage_of(position: int, stage: int | None) -> None:
    assert stage_of(position, [1, 5, 50]) == stage


def test_stage_of_skips_empty_stages() -> None:
    assert stage_of(0, [0, 0, 3]) == 2
    assert stage_of(3, [0, 3, 3, 5]) == 3


def test_stage_of_past_a_last_stage_under_100_percent() -> None:
    bounds = cutoffs(stages("1%", "10%"), 1000)
    assert stage_of(99, bounds) == 1
    assert stage_of(100, bounds) is None


def test_audience_order_is_stable() -> None:
    key = audience_order("spring-2025", "A0B1C2-MF286D-0001")
    assert key == audience_order("spring-2025", "A0B1C2-MF286D-0001")
    assert isinstance(key, bytes) and len(key) == 8


def test_audience_order_differs_by_campaign_and_device() -> None:
    assert audience_order("spring", "dev-1") != audience_order("autumn", "dev-1")
    assert audience_order("spring", "dev-1") != audience_order("spring", "dev-2")


def test_audience_order_is_a_shuffle_per_campaign() -> None:
    ids = [f"A0B1C2-MF286D-{n:04d}" for n in range(50)]
    spring = sorted(ids, key=lambda d: audience_order("spring", d))
    autumn = sorted(ids, key=lambda d: audience_order("autumn", d))
    assert sorted(spring) == ids
    assert spring != ids  # not the oldest serial numbers first
    assert spring != autumn
    assert spring == sorted(ids, key=lambda d: audience_order("spring", d))  # dry run == run


# --- decide ----------------------------------------------------------------------


def counts(total: int | None = None, **by_state: int) -> StageCounts:
    if total is None:
        total = sum(by_state.values())
    return StageCounts(total, dict(by_state))


THREE = stages("1%", "10%", "100%")


def test_stage_counts_count() -> None:
    c = counts(pending=2, downloading=1, failed=3)
    assert c.total == 6
    assert c.count("pending", "downloading") == 3
    assert c.count("succeeded") == 0
    assert c.count() == 0


def test_stage_defaults_are_all_must_succeed_and_ten_percent_may_fail() -> None:
    default = Stage(Amount.parse("10%"))
    assert (default.on_success, default.on_failure) == ("next", "pause")
    for total in (0, 1, 9, 10, 205, 1000):
        assert default.success.of(total) == SUCCESS_ALL.of(total)
        assert default.failure.of(total) == FAILURE_10.of(total)


def test_stage_default_thresholds_can_be_explained() -> None:
    default = Stage(Amount.parse("10%"))
    assert (str(default.success), str(default.failure)) == ("100%", "10%")
    plan = [default, Stage(Amount.parse("100%"))]
    failed = decide(plan, 0, {0: counts(succeeded=9, failed=1)})
    assert (failed.action, failed.failure) == ("pause", True)
    below = decide(plan, 0, {0: counts(succeeded=9, skipped=1)})
    assert below.action == "pause" and "100%" in below.reason


def test_advance_when_the_success_threshold_is_reached() -> None:
    decision = decide(THREE, 0, {0: counts(succeeded=10)})
    assert decision.action == "advance"
    assert not decision.failure
    assert "10 of 10" in decision.reason


def test_advance_before_every_device_is_done_with_a_lower_success_threshold() -> None:
    plan = stages("10%", "100%", success=Amount.parse("80%"))
    decision = decide(plan, 0, {0: counts(succeeded=8, downloading=2)})
    assert decision.action == "advance"


def test_none_while_devices_remain_active() -> None:
    for state in ("pending", "downloading", "installing", "verifying"):
        decision = decide(THREE, 0, {0: counts(succeeded=9, **{state: 1})})
        assert decision == Decision("none"), state


def test_none_with_an_active_device_and_failures_below_the_threshold() -> None:
    plan = stages("10%", "100%", failure=Amount.parse("20%"))
    decision = decide(plan, 0, {0: counts(succeeded=7, failed=1, installing=2)})
    assert decision.action == "none"


def test_pause_on_success_when_the_stage_asks_for_approval() -> None:
    plan = stages("1%", "100%", on_success="pause")
    decision = decide(plan, 0, {0: counts(succeeded=10)})
    assert decision.action == "pause"
    assert decision.stage == 0
    assert not decision.failure
    assert "approve to start stage 2" in decision.reason


def test_pause_when_the_stage_finished_below_the_success_threshold() -> None:
    plan = stages("10%", "100%", failure=Amount.parse("50%"))
    decision = decide(plan, 0, {0: counts(succeeded=8, failed=1, skipped=1)})
    assert decision.action == "pause"
    assert decision.stage == 0
    assert not decision.failure
    assert "below its success threshold" in decision.reason
    assert "8 of 10" in decision.reason


def test_empty_stage_advances() -> None:
    decision = decide(THREE, 0, {})
    assert decision.action == "advance"


@pytest.mark.parametrize(("on_failure", "action"), [("pause", "pause"), ("abort", "abort")])
def test_failure_threshold_crossed(on_failure: str, action: str) -> None:
    plan = stages("10%", "100%", on_failure=on_failure)
    # 10% of 20 devices is 2 failures
    assert decide(plan, 0, {0: counts(succeeded=10, failed=1, downloading=9)}).action == "none"
    decision = decide(plan, 0, {0: counts(succeeded=10, failed=2, downloading=8)})
    assert decision.action == action
    assert decision.failure is True
    assert decision.stage == 0
    assert "2 of 20" in decision.reason and "10%" in decision.reason


def test_failure_threshold_share_rounds_up_so_one_failure_counts() -> None:
    decision = decide(THREE, 0, {0: counts(succeeded=4, failed=1)})
    assert (decision.action, decision.failure) == ("pause", True)


def test_zero_failure_threshold_still_needs_one_failure() -> None:
    plan = stages("10%", "100%", failure=Amount.parse("0%"))
    assert decide(plan, 0, {0: counts(succeeded=3, pending=7)}).action == "none"
    decision = decide(plan, 0, {0: counts(succeeded=3, failed=1, pending=6)})
    assert (decision.action, decision.failure) == ("pause", True)


def test_count_based_failure_threshold() -> None:
    plan = stages("10%", "100%", failure=Amount.parse("2"))
    one = decide(plan, 0, {0: counts(succeeded=50, failed=1, downloading=49)})
    assert one.action == "none"
    two = decide(plan, 0, {0: counts(succeeded=50, failed=2, downloading=48)})
    assert (two.action, two.failure, two.stage) == ("pause", True, 0)
    assert "threshold 2 reached" in two.reason


def test_failure_wins_over_success() -> None:
    plan = stages("10%", "100%", success=Amount.parse("50%"), on_failure="abort")
    decision = decide(plan, 0, {0: counts(succeeded=8, failed=2)})
    assert (decision.action, decision.failure) == ("abort", True)


@pytest.mark.parametrize(("on_failure", "action"), [("pause", "pause"), ("abort", "abort")])
def test_late_failure_in_an_earlier_stage_halts_a_later_stage(on_failure: str, action: str) -> None:
    plan = [stage("1%", on_failure=on_failure), stage("10%"), stage("100%")]
    decision = decide(
        plan,
        1,
        {0: counts(succeeded=9, failed=1), 1: counts(succeeded=40, downloading=50)},
    )
    assert decision.action == action
    assert decision.failure is True
    assert decision.stage == 0
    assert decision.reason.startswith("stage 1:")


def test_later_stage_failure_uses_that_stages_threshold() -> None:
    plan = [stage("1%"), stage("100%", failure=Amount.parse("5"), on_failure="abort")]
    c = {0: counts(succeeded=10), 1: counts(succeeded=80, failed=4, pending=6)}
    assert decide(plan, 1, c).action == "none"
    c[1] = counts(succeeded=80, failed=5, pending=5)
    decision = decide(plan, 1, c)
    assert (decision.action, decision.stage, decision.failure) == ("abort", 1, True)


def test_baseline_prevents_retriggering_until_new_failures() -> None:
    # 10% of 10 devices: one failure pauses; the operator acknowledged two
    c = {0: counts(succeeded=8, failed=2)}
    assert decide(THREE, 0, c).failure
    acknowledged = {0: 2}
    decision = decide(THREE, 0, c, acknowledged)
    assert not decision.failure
    assert decision.action == "pause"  # finished below 100% success, not a failure

    c = {0: counts(succeeded=7, failed=2, downloading=1)}
    assert decide(THREE, 0, c, acknowledged) == Decision("none")

    c = {0: counts(succeeded=7, failed=3)}
    decision = decide(THREE, 0, c, acknowledged)
    assert (decision.action, decision.failure, decision.stage) == ("pause", True, 0)
    assert "3 of 10" in decision.reason


def test_baseline_is_per_stage() -> None:
    # 10% of 10 devices: one failure reaches either stage's threshold
    c = {0: counts(succeeded=9, failed=1), 1: counts(succeeded=8, failed=1, pending=1)}
    decision = decide(THREE, 1, c, {0: 1})
    assert (decision.action, decision.stage, decision.failure) == ("pause", 1, True)
    assert decide(THREE, 1, c, {0: 1, 1: 1}).action == "none"


def test_complete_only_at_the_last_stage_with_nothing_active() -> None:
    done = {0: counts(succeeded=10), 1: counts(succeeded=90), 2: counts(succeeded=900)}
    decision = decide(THREE, 2, done)
    assert decision.action == "complete"
    assert not decision.failure

    # a non-last stage all done advances instead of completing
    assert decide(THREE, 1, done).action == "advance"


def test_not_complete_while_the_last_stage_is_active() -> None:
    c = {0: counts(succeeded=10), 1: counts(succeeded=90), 2: counts(succeeded=899, verifying=1)}
    assert decide(THREE, 2, c) == Decision("none")


def test_not_complete_while_an_earlier_stage_is_active() -> None:
    c = {
        0: counts(succeeded=9, installing=1),
        1: counts(succeeded=90),
        2: counts(succeeded=900),
    }
    assert decide(THREE, 2, c) == Decision("none")


def test_complete_with_failures_below_the_threshold() -> None:
    c = {
        0: counts(succeeded=10),
        1: counts(succeeded=90),
        2: counts(succeeded=890, failed=5, skipped=5),
    }
    assert decide(THREE, 2, c).action == "complete"


def test_last_stage_failure_threshold_pauses_instead_of_completing() -> None:
    c = {0: counts(succeeded=10), 1: counts(succeeded=90), 2: counts(succeeded=800, failed=100)}
    decision = decide(THREE, 2, c)
    assert (decision.action, decision.failure, decision.stage) == ("pause", True, 2)


def test_single_stage_campaign() -> None:
    plan = stages("100%")
    assert decide(plan, 0, {0: counts(succeeded=5, pending=5)}).action == "none"
    assert decide(plan, 0, {0: counts(succeeded=10)}).action == "complete"
    assert decide(plan, 0, {}).action == "complete"


# --- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 300.0), (1, 300.0), (2, 600.0), (3, 1200.0), (4, 2400.0), (5, 4800.0)],
)
def test_retry_delay_doubles(attempts: int, delay: float) -> None:
    assert retry_delay(attempts, 300) == delay


@pytest.mark.parametrize("attempts", [10, 20, 60])
def test_retry_delay_is_capped_at_a_day(attempts: int) -> None:
    assert retry_delay(attempts, 300.0) == 86400.0


def test_retry_delay_returns_float() -> None:
    assert isinstance(retry_delay(2, 30), float)
    assert retry_delay(1, 86400 * 2) == 86400.0


@pytest.mark.parametrize("code", [9002, 9004, 9010, 9015, 9017])
def test_transient_fault_codes(code: int) -> None:
    assert is_transient(code, "")
    assert is_transient(code, "whatever the CPE said")


@pytest.mark.parametrize("code", [9018, 9016, 9012, 9001, 9003, 9011, 0])
def test_permanent_fault_codes(code: int) -> None:
    assert not is_transient(code, "")
    # a fault code decides, not the reason text
    assert not is_transient(code, POWER_LOSS)


def test_power_loss_without_fault_code_is_transient() -> None:
    assert is_transient(None, POWER_LOSS)


@pytest.mark.parametrize(
    "reason",
    ["", "checksum mismatch", "came back on a different version", POWER_LOSS.upper()],
)
def test_other_reasons_without_fault_code_are_not_transient(reason: str) -> None:
    assert not is_transient(None, reason)
