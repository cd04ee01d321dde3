"""`cpe-sim`: run a fleet of simulated CPEs against an ACS; `cpe-sim make-image`
builds a firmware image those CPEs accept."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import signal
import time
from pathlib import Path

import click

from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import PROFILES, ProfileError, Timing, parse_profiles
from cpe_simulator.software import make_package


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# A group that also runs on its own: `cpe-sim --acs-url ...` simulates, as it
# always did, and `cpe-sim make-image ...` is a subcommand beside it.
@click.group(invoke_without_command=True, context_settings={"show_default": True})
@click.option("--acs-url", default=None, help="the ACS's CWMP URL (required to simulate)")
@click.option("--devices", default=1, type=click.IntRange(1, 1_000_000))
@click.option(
    "--model", type=click.Choice(["tr181-gateway", "tr098-gateway"]), default="tr181-gateway"
)
@click.option("--serial-prefix", default="SIM")
@click.option("--oui", default="ACDE48")
@click.option("--product-class", default="HGW")
@click.option("--software-version", default="1.0.0")
@click.option(
    "--periodic-interval",
    type=click.IntRange(1),
    default=None,
    help="seconds; default: the data model's PeriodicInformInterval",
)
@click.option("--ramp", type=float, default=0.0, help="spread the first sessions over SECONDS")
@click.option("--faults", default="", help=f"e.g. drop:0.1,slow:0.2; known: {', '.join(PROFILES)}")
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.001),
    default=1.0,
    help="simulated hours of the health profiles (reboot-after-upgrade:HOURS) pass this"
    " many times faster: 3600 makes an hour a second",
)
@click.option("--username", default=None, help="CPE credential towards the ACS")
@click.option("--password", default=None)
@click.option(
    "--auth",
    type=click.Choice(["digest", "basic"]),
    default="digest",
    help="how CPEs authenticate to the ACS",
)
@click.option("--cwmp-version", type=click.Choice(["1.0", "1.4"]), default="1.0")
@click.option("--cr-host", default="127.0.0.1", help="connection-request listener address")
@click.option("--cr-port", type=int, default=7548)
@click.option(
    "--nat",
    is_flag=True,
    help="behind a NAT: no inbound TCP connection requests; reachable by STUN + UDP only",
)
@click.option(
    "--xmpp-server",
    default=None,
    help="host:port of an XMPP server: each CPE logs in as <serial>@DOMAIN/cwmp (Annex K)",
)
@click.option("--xmpp-domain", default="", help="the XMPP domain of the CPEs' accounts")
@click.option("--xmpp-password", default="", help="the password of every CPE's XMPP account")
@click.option(
    "--max-concurrent", type=click.IntRange(1), default=200, help="sessions in flight at once"
)
@click.option("--retry-min-wait", type=float, default=5.0, help="TR-069 3.2.1.1 m, seconds")
@click.option(
    "--ca-file",
    default=None,
    help="CA bundle to verify an https ACS URL and the XMPP server (STARTTLS) against",
)
@click.option("--client-cert", default=None, help="PEM client certificate the CPEs present")
@click.option("--client-key", default=None, help="its key, unless inside --client-cert")
@click.option(
    "--state",
    "state_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON {serial: {path: value}}: configuration each CPE kept from an earlier life"
    " (such a CPE has bootstrapped: it powers on with 1 BOOT only)",
)
@click.option("--duration", type=float, default=None, help="stop after SECONDS")
@click.option("--summary-every", type=float, default=5.0)
@click.option("--json-summary", is_flag=True, help="print the final tally as JSON")
@click.pass_context
def main(
    ctx: click.Context,
    acs_url: str | None,
    devices: int,
    model: str,
    serial_prefix: str,
    oui: str,
    product_class: str,
    software_version: str,
    periodic_interval: int | None,
    ramp: float,
    faults: str,
    time_scale: float,
    username: str | None,
    password: str | None,
    auth: str,
    cwmp_version: str,
    cr_host: str,
    cr_port: int,
    nat: bool,
    xmpp_server: str | None,
    xmpp_domain: str,
    xmpp_password: str,
    max_concurrent: int,
    retry_min_wait: float,
    ca_file: str | None,
    client_cert: str | None,
    client_key: str | None,
    state_file: str | None,
    duration: float | None,
    summary_every: float,
    json_summary: bool,
) -> None:
    """Simulate DEVICES CPEs against the ACS at ACS_URL."""
    if ctx.invoked_subcommand is not None:
        return
    if acs_url is None:
        raise click.UsageError("Missing option '--acs-url' (the ACS's CWMP URL).")
    logging.basicConfig(level=logging.WARNING)
    if xmpp_server and (":" not in xmpp_server or not xmpp_domain):
        raise click.UsageError("--xmpp-server needs host:port and --xmpp-domain")
    try:
        parse_profiles(faults)
    except ProfileError as err:
        raise click.BadParameter(str(err), param_hint="--faults") from None
    config = FleetConfig(
        acs_url=acs_url,
        devices=devices,
        model=model,
        serial_prefix=serial_prefix,
        oui=oui,
        product_class=product_class,
        software_version=software_version,
        periodic_interval=periodic_interval,
        ramp_s=ramp,
        faults=faults,
        username=username,
        password=password,
        auth=auth,
        cr_host=cr_host,
        cr_port=cr_port,
        nat=nat,
        xmpp_server=xmpp_server,
        xmpp_domain=xmpp_domain,
        xmpp_password=xmpp_password,
        cwmp_version=cwmp_version,
        max_concurrent=max_concurrent,
        timing=Timing(retry_min_wait_s=retry_min_wait, hour_s=3600.0 / time_scale),
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
        state=json.loads(Path(state_file).read_text()) if state_file else {},
    )
    asyncio.run(_run(config, duration, summary_every, json_summary))


async def _run(config: FleetConfig, duration: float | None, every: float, as_json: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = Fleet(config)
    started = time.monotonic()
    await fleet.start()
    where = "STUN + UDP only (--nat)" if config.nat else f"{config.cr_host}:{fleet.cr_server.port}"
    click.echo(
        f"{config.devices} CPEs ({config.model}) -> {config.acs_url};"
        f" connection requests on {where}"
    )
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
            except TimeoutError:
                pass
            s = fleet.summary()
            click.echo(
                f"[{time.monotonic() - started:7.1f}s] online {s['online']}/{s['devices']}"
                f"  sessions ok {s['sessions_ok']} failed {s['sessions_failed']}"
                f"  in flight {s['in_session']}  rss {rss_mb():.0f} MB"
            )
            if duration is not None and time.monotonic() - started >= duration:
                break
    finally:
        await fleet.stop()
    s = fleet.summary()
    s["elapsed_s"] = round(time.monotonic() - started, 1)
    s["rss_mb"] = round(rss_mb(), 1)
    if as_json:
        click.echo(json.dumps(s))
    else:
        click.echo(
            f"final: {s['sessions_ok']} sessions ok, {s['sessions_failed']} failed, "
            f"{s['online']}/{s['devices']} online, rss {s['rss_mb']} MB"
        )
        for name, n in s["faults"].items():
            click.echo(f"  {name}: {n}")


@main.command("make-image", context_settings={"show_default": True})
@click.option("--version", "version", required=True, help="the SoftwareVersion the image installs")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="file to write",
)
@click.option("--size", type=click.IntRange(0, 1 << 30), default=64 * 1024, help="payload bytes")
def make_image_command(version: str, output: str, size: int) -> None:
    """Write a firmware image the simulated CPEs install (see cpe_simulator/firmware.py).

    Prints its size and SHA-256, which a catalog entry may quote."""
    if not version or any(c.isspace() for c in version):
        # the header is space-separated: a version with a blank would not parse back
        raise click.BadParameter("must be non-empty and without spaces", param_hint="--version")
    data = make_image(version, payload_size=size)
    Path(output).write_bytes(data)
    click.echo(
        f"{output}: firmware {version}, {len(data)} bytes, "
        f"sha256 {hashlib.sha256(data).hexdigest()}"
    )


@main.command("make-package", context_settings={"show_default": True})
@click.option("--name", required=True, help="the deployment unit's name")
@click.option("--version", "version", required=True, help="its version")
@click.option("--unit", "units", multiple=True, help="an execution unit it brings (repeat)")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="file to write",
)
def make_package_command(name: str, version: str, units: tuple[str, ...], output: str) -> None:
    """Write a deployment unit package the simulated CPEs install with ChangeDUState
    (see cpe_simulator/software.py); without --unit it brings one unit named after it."""
    checks = [(name, "--name", 64), (version, "--version", 32), *((u, "--unit", 64) for u in units)]
    for value, hint, most in checks:
        if not re.fullmatch(rf"[A-Za-z0-9_.-]{{1,{most}}}", value):
            # the header is space- and comma-separated: such a value would not parse back
            raise click.BadParameter("letters, digits, '.', '_' and '-' only", param_hint=hint)
    data = make_package(name, version, units)
    Path(output).write_bytes(data)
    click.echo(f"{output}: deployment unit {name} {version}, {len(data)} bytes")
