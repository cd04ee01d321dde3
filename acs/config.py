"""Settings, read from ACS_* environment variables (pydantic-settings).

Every setting has a default that is safe to expose: CPE authentication is on
unless an operator writes ``ACS_CPE_AUTH=none`` on purpose.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LISTENERS = ("cwmp", "api", "files")


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
    http_header_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="every listener: request line and headers must arrive within this, "
        "counted from the connection opening or a request's first byte; else 408 and close",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="every listener: the longest silence while a request body is received; "
        "past it the connection is closed",
    )
    cwmp_http: Literal["lean", "aiohttp"] = Field(
        default="lean",
        description="the CWMP port's HTTP server: lean (CWMP POSTs parsed by httptools in an "
        "asyncio Protocol, anything else handed to aiohttp) or aiohttp (aiohttp for all)",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="the event loop of every ACS process: uvloop (libuv, less CPU per "
        "request) when it is installed, else asyncio's own; asyncio is always a choice",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="server processes sharing the three ports (SO_REUSEPORT); a session's "
        "requests that reach another worker are relayed to the one that owns it",
    )

    # --- cluster: several hosts on one database (README "Cluster settings")
    host_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=200,
        description="this host's name in the cluster: lease holder, metrics, /readyz",
    )
    lease_duration_s: float = Field(
        default=30.0,
        ge=2,
        le=3600,
        description="a host's leases on periodic work run out this long after its last "
        "renewal (by the database's clock); another host then takes them over",
    )
    cluster_secret: str | None = Field(
        default=None,
        min_length=32,
        description="shared by every host: signs host-to-host relay requests and answers",
    )
    relay_listen: str | None = Field(
        default=None,
        description="host:port of this host's relay listener for the other hosts; "
        "unset: no host-to-host relay",
    )
    relay_url: str | None = Field(
        default=None,
        description="how the other hosts reach this host's relay listener; unset: "
        "http://<relay_listen>",
    )
    database_read_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN of a standby for read-only API queries (device lists, "
        "searches, history); unset: the primary",
    )

    # --- TLS (one certificate for every listener that speaks it)
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate chain; the key too unless tls_key_file is set"
    )
    tls_key_file: Path | None = None
    tls_listeners: str = Field(
        default="cwmp,api,files",
        description="which listeners speak TLS when a certificate is set: "
        "old CPE download clients may need the file server on plain HTTP",
    )
    tls_client_ca_file: Path | None = Field(
        default=None, description="CA bundle that CPE client certificates must chain to"
    )
    cwmp_client_cert: Literal["none", "optional", "required"] = Field(
        default="none",
        description="CPE client certificates on the CWMP port: a presented one must verify; "
        "required refuses CPEs without one",
    )

    # --- behind a reverse proxy
    trusted_proxies: str = Field(
        default="",
        description="comma-separated IPs/CIDRs whose X-Forwarded-For/-Proto are believed",
    )

    # --- metrics (/metrics on the API port)
    metrics_token: str | None = Field(
        default=None, description="when set, /metrics needs Authorization: Bearer <token>"
    )
    metrics_db_cache_s: float = Field(
        default=5.0, gt=0, description="how long job and campaign gauges read from the DB are kept"
    )

    # --- CPE authentication (TR-069 3.4.4: the CPE must authenticate to the ACS)
    cpe_auth: Literal["digest", "basic", "any", "none"] = Field(
        default="digest",
        description="digest, basic, any (either), or none (only when chosen explicitly)",
    )
    cpe_auth_realm: str = "acs"
    cpe_username: str | None = Field(default=None, description="shared CPE credential")
    cpe_password: str | None = None
    cpe_digest_allow_no_qop: bool = Field(
        default=False,
        description="accept RFC 2069 Digest answers without qop=auth (old CPE stacks); "
        "each nonce is then good for one request",
    )
    cpe_auth_max_failures: int = Field(
        default=10,
        ge=0,
        description="wrong CPE passwords per username and per address before both are "
        "refused (503 with Retry-After); 0 never refuses",
    )
    cpe_auth_failure_window_s: float = Field(
        default=600.0, gt=0, description="failures further apart than this start the count again"
    )
    cpe_auth_backoff_s: float = Field(
        default=1.0, gt=0, description="first refusal after the limit; doubles per failure"
    )
    cpe_auth_backoff_max_s: float = Field(
        default=300.0, gt=0, description="longest refusal after failed CPE passwords"
    )

    # --- CWMP sessions
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # 500: past a few hundred sessions one process is CPU-bound in a boot storm:
    # more only makes every session slower, until CPEs time out (bench/fleet.py,
    # BENCHMARKS.md). Memory is not the bound any more: a discovering session
    # holds its transcript compressed and no tree (bench/reboot.py measures it)
    max_sessions_per_worker: int = Field(
        default=500,
        ge=1,
        description="CWMP sessions in flight in one process; a new Inform past it gets "
        "HTTP 503 with Retry-After, and sessions already running finish",
    )
    # fair admission (acs/core/admission.py): behind a carrier-grade NAT hundreds
    # of real CPEs share one address, so the per-address limit is generous; the
    # shared credential's leaves room for CPEs with credentials of their own
    max_sessions_per_address: int | None = Field(
        default=None,
        ge=1,
        description="CWMP sessions in flight in one process from one client address; "
        "unset: half of max_sessions_per_worker",
    )
    max_sessions_per_credential: int | None = Field(
        default=None,
        ge=1,
        description="CWMP sessions in flight in one process under one CPE username; "
        "unset: four fifths of max_sessions_per_worker",
    )
    # a storm's discovery answers (~170 KB each) queue for the database pool at
    # the end of their handling; more in progress than the pool serves finishes
    # none sooner and holds each one's decoded answer meanwhile (acs/web/large.py)
    large_request_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="a CWMP request body at least this large is handled only while fewer "
        "than ACS_LARGE_REQUESTS_AT_ONCE are; the next ones wait, compressed",
    )
    large_requests_at_once: int | None = Field(
        default=None,
        ge=1,
        description="large CWMP requests handled at once in one process; "
        "unset: the database pool size",
    )
    session_timeout_s: float = Field(
        default=30.0, gt=0, description="a session idle longer than this is abandoned"
    )
    gpv_batch_size: int = Field(default=100, ge=1, le=10_000)
    # discovery reads values by the size of the answer, not a count of names: a
    # CPE's limit is the envelope it must build, and 64 KB is what gateways with a
    # few MB of RAM answer without trouble (only CPEs that refuse a partial-path
    # GetParameterValues of the whole tree are read in batches at all)
    gpv_batch_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=10 * 1024 * 1024,
        description="estimated bytes of one GetParameterValues answer when discovery "
        "reads a CPE that refuses partial paths in batches",
    )
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
    diagnostics_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="a diagnostics job without 8 DIAGNOSTICS COMPLETE by then faults",
    )
    kicked_next_url: str = Field(
        default="",
        max_length=1024,
        description="the next URL a CPE's Kicked is answered with; empty: fault 8000",
    )

    # --- provisioning
    default_policies: bool = Field(
        default=True,
        description="create the shipped default policies (periodic inform, connection-request"
        " credentials) on first start",
    )

    # --- secrets (passwords and keys in device trees and jobs; acs.core.secrets)
    secrets_key: str | None = Field(
        default=None,
        min_length=32,
        description="the key secrets are sealed with at rest; unset: one is made in"
        " data_dir/secrets.key",
    )
    secret_parameters: str = Field(
        default="",
        description="comma-separated parameter name endings that are secrets too,"
        " beyond the built-in ones (Password, Passphrase, PreSharedKey, WEPKey, Secret)",
    )

    # --- firmware campaigns
    campaign_tick_s: float = Field(
        default=10.0, gt=0, description="how often campaigns advance stages and time out devices"
    )

    # --- session logs (every SOAP message of a device's last sessions, secrets masked)
    session_log_per_device: int = Field(
        default=10, ge=0, le=1000, description="sessions kept per device; 0 turns logging off"
    )
    session_log_max_age_s: float = Field(
        default=7 * 86400.0, gt=0, description="older session logs are pruned"
    )
    session_log_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="message bodies stored per session; the rest is cut with a marker",
    )
    session_log_bodies: Literal["eventful", "always"] = Field(
        default="eventful",
        description="quiet periodic sessions are logged without their bodies unless 'always'",
    )
    session_end_batch_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="a quiet session's end waits this long for others to share its write; 0: alone",
    )
    session_end_batch_max: int = Field(
        default=200, ge=1, le=10_000, description="quiet sessions' ends written in one statement"
    )
    session_open_batch_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="a periodic Inform that changes nothing waits this long for others to "
        "share its statement (Informs arriving during a statement share the next one anyway)",
    )
    session_open_batch_max: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="periodic Informs opened in one statement; 1: each alone",
    )
    session_log_full_tag: str = Field(
        default="log:full",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="devices with this tag keep every session's bodies",
    )

    # --- history (5-minute buckets of sessions, faults, knocks and online devices)
    history_flush_s: float = Field(
        default=60.0, gt=0, le=300, description="how often each process adds its counts"
    )
    history_keep_days: int = Field(
        default=30, ge=1, le=3650, description="days of history kept; older buckets are pruned"
    )

    # --- retention (an APScheduler job prunes in batches)
    retention_interval_s: float = Field(default=3600.0, gt=0, description="how often to prune")
    job_retention_s: float = Field(
        default=30 * 86400.0, gt=0, description="finished jobs older than this are deleted"
    )
    audit_retention_s: float = Field(
        default=365 * 86400.0, gt=0, description="audit rows older than this are deleted"
    )
    webhook_retention_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="delivered or abandoned webhook deliveries older than this are deleted",
    )

    # --- webhooks (delivery)
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="per delivery request")
    webhook_concurrency: int = Field(
        default=20, ge=1, description="deliveries in flight at once, over all hooks"
    )
    webhook_per_hook_concurrency: int = Field(
        default=4, ge=1, description="deliveries in flight to one hook: a hung hook holds no more"
    )
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="failed tries before a delivery is abandoned"
    )
    webhook_retry_base_s: float = Field(
        default=10.0, gt=0, description="wait after the first failed try; doubles, capped at 1 h"
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="how often the sender looks for due deliveries"
    )

    # --- bulk jobs
    bulk_tick_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="how often bulk jobs queue their next devices; a job holds at most two "
        "ticks' worth of its rate, so a shorter tick spreads its tasks more evenly",
    )

    # --- connection requests (ACS -> CPE)
    connection_request_timeout_s: float = Field(default=5.0, gt=0)
    connection_request_concurrency: int = Field(default=50, ge=1)
    connection_request_per_host: int = Field(
        default=4,
        ge=1,
        description="connection requests in flight to one host:port; a target that hangs"
        " holds no more than this many of the process's slots",
    )
    connection_request_allow_basic: bool = False
    knock_waiting_rate_per_s: float = Field(
        default=20.0,
        gt=0,
        le=10000,
        description="POST /campaigns/{id}/knock and /bulk-jobs/{id}/knock: connection requests"
        " started per second by one action (the process-wide limits above still apply)",
    )
    knock_waiting_max: int = Field(
        default=500,
        ge=1,
        le=100000,
        description="devices one knock action knocks at most; the answer says how many wait still",
    )
    connection_request_username: str | None = Field(
        default=None, description="used when a device has none of its own"
    )
    connection_request_password: str | None = None

    # --- NAT traversal (TR-111 Part 2): STUN server and UDP connection requests
    stun_enable: bool = Field(
        default=True,
        description="run the STUN server CPEs behind a NAT keep their binding open with, and"
        " send UDP connection requests; false: HTTP connection requests only",
    )
    stun_port: int = Field(
        default=3478, ge=0, le=65535, description="UDP port of the STUN server, on ACS_HOST"
    )
    stun_rate_per_source: float = Field(
        default=200.0,
        gt=0,
        description="Binding Requests per second one source address may send (twice that in"
        " a burst); more are dropped. Many CPEs behind one carrier-grade NAT share an address",
    )
    stun_binding_fresh_s: float = Field(
        default=300.0,
        gt=0,
        description="a STUN binding seen longer ago than this is not used for UDP connection"
        " requests; keep it above the CPEs' STUNMaximumKeepAlivePeriod",
    )

    # --- XMPP connection requests (TR-069 Annex K); off while xmpp_server is unset
    xmpp_server: str | None = Field(
        default=None,
        description="host[:port] (5222) of the operator's XMPP server the ACS logs in to",
    )
    xmpp_jid: str | None = Field(default=None, description="the ACS's own JID on that server")
    xmpp_password: str | None = Field(default=None, description="the password of xmpp_jid")
    xmpp_require_tls: bool = Field(
        default=True, description="refuse an XMPP server that offers no STARTTLS"
    )
    xmpp_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle the XMPP server's certificate must chain to (STARTTLS);"
        " default: the system's CAs",
    )

    # --- API and files
    api_max_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    files_public_url: str | None = Field(
        default=None,
        description="base URL CPEs download files from; default http://<public_host>:<files_port>/",
    )
    files_username: str | None = None
    files_password: str | None = None
    # where file bytes live: "local" (data_dir only: one host), or "postgres"
    # (chunks in the database every host reaches, a disk cache per host;
    # required with several ACS hosts; acs/store/blobs.py)
    file_store: Literal["local", "postgres"] = Field(
        default="local",
        description="where uploaded images and CPE backups live: local disk, or PostgreSQL"
        " with a per-host disk cache (needed with several ACS hosts)",
    )

    # --- config backup and restore (files CPEs upload; acs/web/transfers.py)
    backup_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1, description="largest file a CPE may upload; more is 413"
    )
    backups_per_device: int = Field(
        default=10, ge=0, description="newest uploaded files kept per device (0: no limit)"
    )
    backup_max_age_s: float = Field(
        default=365 * 86400.0, ge=0, description="uploaded files older than this go (0: no limit)"
    )

    # --- web UI (/ui on the API port)
    ui_session_idle_s: float = Field(
        default=8 * 3600, gt=0, description="a UI session unused this long ends"
    )
    ui_session_max_s: float = Field(
        default=7 * 86400, gt=0, description="a UI session ends this long after sign-in"
    )
    login_concurrency: int = Field(
        default=2,
        ge=1,
        le=64,
        description="password checks (Argon2, 64 MiB each) in flight per process;"
        " more sign-ins wait their turn",
    )
    ui_cookie_secure: bool | None = Field(
        default=None,
        description="mark the session cookie Secure; unset: when the request came over"
        " TLS (directly or per X-Forwarded-Proto from a TLS-terminating proxy)",
    )

    @model_validator(mode="after")
    def _relay_needs_the_secret(self) -> Settings:
        if self.relay_listen is not None:
            if self.cluster_secret is None:
                raise ValueError(
                    "ACS_RELAY_LISTEN needs ACS_CLUSTER_SECRET (the same on every host)"
                )
            host, sep, port = self.relay_listen.rpartition(":")
            if not sep or not port.isdigit() or int(port) > 65535:
                raise ValueError(f"ACS_RELAY_LISTEN must be host:port, not {self.relay_listen!r}")
        return self

    @model_validator(mode="after")
    def _admission_defaults(self) -> Settings:
        if self.max_sessions_per_address is None:
            self.max_sessions_per_address = max(1, self.max_sessions_per_worker // 2)
        if self.max_sessions_per_credential is None:
            self.max_sessions_per_credential = max(1, self.max_sessions_per_worker * 4 // 5)
        if self.large_requests_at_once is None:
            self.large_requests_at_once = self.database_pool_size
        return self

    @model_validator(mode="after")
    def _shared_credential_is_whole(self) -> Settings:
        if (self.cpe_username is None) != (self.cpe_password is None):
            raise ValueError("set both ACS_CPE_USERNAME and ACS_CPE_PASSWORD, or neither")
        return self

    @model_validator(mode="after")
    def _xmpp_login_is_whole(self) -> Settings:
        if self.xmpp_server and not (self.xmpp_jid and self.xmpp_password):
            raise ValueError("ACS_XMPP_SERVER needs ACS_XMPP_JID and ACS_XMPP_PASSWORD")
        return self

    @field_validator("tls_listeners")
    @classmethod
    def _known_listeners(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - set(LISTENERS))
        if unknown:
            raise ValueError(f"unknown listener(s) {unknown}; choose from {list(LISTENERS)}")
        return ",".join(n for n in LISTENERS if n in names)

    @field_validator("secret_parameters")
    @classmethod
    def _secret_endings_parse(cls, value: str) -> str:
        from acs.core.secrets import parse_endings

        parse_endings(value)  # ValueError names the bad entry
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        from acs.web.proxy import parse_networks

        parse_networks(value)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _tls_is_consistent(self) -> Settings:
        # each refusal here is a setting that would otherwise be silently ignored
        # or leave CPEs with no credential at all
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("ACS_TLS_KEY_FILE is set without ACS_TLS_CERT_FILE")
        if self.cwmp_client_cert == "none":
            if self.tls_client_ca_file is not None:
                raise ValueError(
                    "ACS_TLS_CLIENT_CA_FILE is set but ACS_CWMP_CLIENT_CERT is none: "
                    "set it to optional or required"
                )
            return self
        if not self.tls_on("cwmp"):
            raise ValueError(
                "ACS_CWMP_CLIENT_CERT needs TLS on the CWMP port (ACS_TLS_CERT_FILE, "
                "and cwmp in ACS_TLS_LISTENERS)"
            )
        if self.tls_client_ca_file is None:
            raise ValueError("ACS_CWMP_CLIENT_CERT needs ACS_TLS_CLIENT_CA_FILE")
        if self.cwmp_client_cert == "optional" and self.cpe_auth == "none":
            raise ValueError(
                "ACS_CWMP_CLIENT_CERT=optional with ACS_CPE_AUTH=none lets a CPE without a "
                "certificate in with no credential at all: use required, or an HTTP auth"
            )
        return self

    def tls_on(self, listener: str) -> bool:
        return self.tls_cert_file is not None and listener in self.tls_listeners.split(",")

    def scheme_of(self, listener: str) -> str:
        return "https" if self.tls_on(listener) else "http"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def files_cache_dir(self) -> Path:
        """This host's copies of images kept in PostgreSQL, named by SHA-256."""
        return self.files_dir / ".cache"

    @property
    def shared_files(self) -> bool:
        return self.file_store == "postgres"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def files_base_url(self) -> str:
        """Where CPEs fetch files from: the URL put in Download RPCs."""
        if self.files_public_url:
            return self.files_public_url.rstrip("/") + "/"
        host = self.public_host or "127.0.0.1"
        return f"{self.scheme_of('files')}://{host}:{self.files_port}/"
