"""Settings, read from ACS_* environment variables (pydantic-settings).

Every setting has a default that is safe to expose: CPE authentication is on
unless an operator writes ``ACS_CPE_AUTH=none`` on purpose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACS_", extra="ignore")

    # --- storage
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN; unset: an embedded server with its data under data_dir",
    )
    data_dir: Path = Path("var")
    database_pool_size: int = Field(default=10, ge=1, le=200)

    # --- listeners
    host: str = "0.0.0.0"
    cwmp_port: int = Field(default=7547, ge=0, le=65535)
    api_port: int = Field(default=7557, ge=0, le=65535)
    files_port: int = Field(default=7567, ge=0, le=65535)
    public_host: str | None = Field(
        default=None, description="host name CPEs and operators use to reach us, for printed URLs"
    )

    # --- CPE authentication (TR-069 3.4.4: the CPE must authenticate to the ACS)
    cpe_auth: Literal["digest", "basic", "any", "none"] = Field(
        default="digest",
        description="digest, basic, any (either), or none (only when chosen explicitly)",
    )
    cpe_auth_realm: str = "acs"
    cpe_username: str | None = Field(default=None, description="shared CPE credential")
    cpe_password: str | None = None

    # --- CWMP sessions
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    session_timeout_s: float = Field(
        default=30.0, gt=0, description="a session idle longer than this is abandoned"
    )
    gpv_batch_size: int = Field(default=100, ge=1, le=10_000)
    discovery_on_bootstrap: bool = True
    max_task_attempts: int = Field(default=3, ge=1)
    task_retry_base_s: float = Field(
        default=60.0, ge=0, description="first back-off after a transient CPE fault; doubles"
    )
    transfer_complete_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="a Download/Upload without TransferComplete by then faults",
    )

    # --- provisioning
    default_policies: bool = Field(
        default=True,
        description="create the shipped default policies (periodic inform, connection-request"
        " credentials) on first start",
    )

    # --- firmware campaigns
    campaign_tick_s: float = Field(
        default=10.0, gt=0, description="how often campaigns advance stages and time out devices"
    )

    # --- connection requests (ACS -> CPE)
    connection_request_timeout_s: float = Field(default=5.0, gt=0)
    connection_request_concurrency: int = Field(default=50, ge=1)
    connection_request_allow_basic: bool = False
    connection_request_username: str | None = Field(
        default=None, description="used when a device has none of its own"
    )
    connection_request_password: str | None = None

    # --- API and files
    api_max_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    files_public_url: str | None = Field(
        default=None,
        description="base URL CPEs download files from; default http://<public_host>:<files_port>/",
    )
    files_username: str | None = None
    files_password: str | None = None

    # --- web UI (/ui on the API port)
    ui_session_idle_s: float = Field(
        default=8 * 3600, gt=0, description="a UI session unused this long ends"
    )
    ui_session_max_s: float = Field(
        default=7 * 86400, gt=0, description="a UI session ends this long after sign-in"
    )
    ui_cookie_secure: bool | None = Field(
        default=None,
        description="mark the session cookie Secure; unset: when the request came over"
        " TLS (directly or per X-Forwarded-Proto from a TLS-terminating proxy)",
    )

    @model_validator(mode="after")
    def _shared_credential_is_whole(self) -> Settings:
        if (self.cpe_username is None) != (self.cpe_password is None):
            raise ValueError("set both ACS_CPE_USERNAME and ACS_CPE_PASSWORD, or neither")
        return self

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def files_base_url(self) -> str:
        """Where CPEs fetch files from: the URL put in Download RPCs."""
        if self.files_public_url:
            return self.files_public_url.rstrip("/") + "/"
        return f"http://{self.public_host or '127.0.0.1'}:{self.files_port}/"
