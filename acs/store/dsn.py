"""PostgreSQL connection strings: libpq's keyword/value form turned into the URI asyncpg reads.

Operators of a highly available PostgreSQL (Patroni, pg_auto_failover) are
handed a libpq connection string such as
``host=db1,db2 port=5432 dbname=acs user=acs target_session_attrs=read-write``:
libpq tries each host in turn and keeps the first that accepts writes, which is
how a client finds the new primary after a failover. asyncpg implements the
same rule (several hosts, ``target_session_attrs``) but reads only the URI form,
``postgresql://acs@db1:5432,db2:5432/acs?target_session_attrs=read-write``; so
the keyword form is rewritten here, keyword for keyword, and the URI form
passes through untouched.

Why not a library: the parser libpq itself exposes (PQconninfoParse) is
reachable from Python only through psycopg, a second PostgreSQL driver with its
own libpq build, for one string read at start; the grammar (key = value,
values optionally single-quoted with backslash escapes) is the few lines below.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

# the keywords the URI carries in its authority and path; the rest are query parameters
_IN_URI = ("host", "hostaddr", "port", "user", "password", "dbname")


class DsnError(ValueError):
    pass


def parse_keywords(conninfo: str) -> dict[str, str]:
    """libpq's keyword/value syntax: ``key=value`` pairs separated by whitespace, spaces
    around ``=`` allowed, a value in single quotes may hold spaces, ``\\'`` and ``\\\\``."""
    out: dict[str, str] = {}
    i, n = 0, len(conninfo)
    while True:
        while i < n and conninfo[i].isspace():
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and conninfo[i] != "=" and not conninfo[i].isspace():
            i += 1
        key = conninfo[start:i]
        while i < n and conninfo[i].isspace():
            i += 1
        if not key or i >= n or conninfo[i] != "=":
            raise DsnError(f"missing '=' after {key!r} in the connection string")
        i += 1
        while i < n and conninfo[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and conninfo[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise DsnError(f"unterminated quoted value for {key!r}")
                ch = conninfo[i]
                if ch == "\\" and i + 1 < n:
                    value.append(conninfo[i + 1])
                    i += 2
                    continue
                i += 1
                if ch == "'":
                    break
                value.append(ch)
        else:
            while i < n and not conninfo[i].isspace():
                if conninfo[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conninfo[i])
                i += 1
        out[key] = "".join(value)


def to_uri(dsn: str) -> str:
    """The URI asyncpg reads for either form of connection string."""
    text = dsn.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return text
    words = parse_keywords(text)
    if not words:
        raise DsnError("an empty connection string")
    hosts = (words.get("host") or words.get("hostaddr") or "").split(",")
    ports = (words.get("port") or "").split(",")
    if len(ports) not in (1, len(hosts)):
        raise DsnError(f"{len(hosts)} hosts but {len(ports)} ports in the connection string")
    if len(ports) == 1:
        ports = ports * len(hosts)
    netloc = ",".join(
        _host_part(h) + (f":{p}" if p else "") for h, p in zip(hosts, ports, strict=True)
    )
    auth = ""
    if "user" in words:
        auth = quote(words["user"], safe="")
        if "password" in words:
            auth += ":" + quote(words["password"], safe="")
        auth += "@"
    query = {k: v for k, v in words.items() if k not in _IN_URI}
    if hosts == [""] and "host" in words:  # a socket directory given as host=/run/...
        query["host"] = words["host"]
    uri = f"postgresql://{auth}{netloc}/{quote(words.get('dbname', ''), safe='')}"
    return uri + ("?" + urlencode(query) if query else "")


def _host_part(host: str) -> str:
    if host.startswith("/"):
        return quote(host, safe="")  # a Unix socket directory, percent-encoded as libpq reads it
    return f"[{host}]" if ":" in host else host


def has_failover(dsn: str) -> bool:
    """Several hosts or a target_session_attrs: the primary may move under us."""
    uri = to_uri(dsn)
    authority = uri.split("://", 1)[1].split("/", 1)[0]
    return "," in authority or "target_session_attrs=" in uri


def redacted(dsn: str) -> str:
    """The connection string with its password replaced, for banners and logs:
    whichever form it has (URI user:password@, a password= query parameter or
    keyword), the secret never reaches a terminal or a log file."""
    try:
        uri = to_uri(dsn)
    except DsnError:
        return "(a connection string that does not parse)"
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, hosts = authority.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        authority = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query = "&".join(
            "password=***" if part.split("=", 1)[0] == "password" else part
            for part in query.split("&")
        )
    return f"{scheme}://{authority}{slash}{path}{qmark}{query}"
