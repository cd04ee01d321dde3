"""Routes for a device's software modules (TR-157 / TR-181 SoftwareModules)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from acs.services import software
from acs.web.api.errors import not_found
from acs.web.api.plumbing import api, json_out, services


class ExecutionUnitOut(BaseModel):
    ref: str = Field(description="its path, e.g. Device.SoftwareModules.ExecutionUnit.1.")
    instance: int | None = Field(description="None when the DU names a unit the tree lacks")
    name: str
    euid: str
    status: str = Field(description="Idle, Starting, Active or Stopping")
    requestedState: str
    executionFaultCode: str
    version: str


class DeploymentUnitOut(BaseModel):
    instance: int
    ref: str
    name: str
    uuid: str
    duid: str
    version: str
    vendor: str
    status: str = Field(description="Installing, Installed, Updating, Uninstalling, Uninstalled")
    resolved: bool
    url: str
    executionEnvRef: str
    executionUnits: list[ExecutionUnitOut]


class ExecEnvOut(BaseModel):
    instance: int
    ref: str
    name: str
    type: str
    status: str
    enable: bool
    version: str


class SoftwareOut(BaseModel):
    device: str
    modules: list[DeploymentUnitOut]
    executionEnvironments: list[ExecEnvOut]


@api.route(
    "GET",
    "/devices/{device_id}/software",
    role="viewer",
    tag="devices",
    summary="The device's software modules: deployment units and their execution units",
    responses={200: (SoftwareOut, "as last read from the device"), 404: (None, "unknown device")},
)
async def device_software(request: web.Request) -> web.Response:
    """Read from the device's stored tree (SoftwareModules.DeploymentUnit.{i}.,
    ExecutionUnit.{i}., ExecEnv.{i}.), which the ACS refreshes in the session a
    DUStateChangeComplete or AutonomousDUStateChangeComplete arrives in."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        found = await software.inventory(conn, dev_id)
    if found is None:
        raise not_found(f"device {dev_id!r}")
    return json_out(SoftwareOut(device=dev_id, **found))
