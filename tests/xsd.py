"""Validate CWMP envelopes against the official Broadband Forum schemas, offline.

``validate_envelope(xml_bytes)`` raises ``AssertionError`` naming every element
that does not validate.  It checks:

- the whole envelope against the SOAP 1.1 envelope schema (structure);
- every header element in a CWMP namespace (ID, HoldRequests, NoMoreRequests,
  SessionTimeout, SupportedCWMPVersions, UseCWMPVersion) and the RPC element
  (the child of soap:Body, or detail/cwmp:Fault of a SOAP fault) against the
  schema of *its* namespace: cwmp-1-0.xsd, cwmp-1-1.xsd, or for
  urn:dslforum-org:cwmp-1-2 both cwmp-1-2.xsd and cwmp-1-4.xsd (CWMP 1.3/1.4
  keep the 1-2 namespace; the headers they add exist only in 1-3/1-4, so an
  element absent from cwmp-1-2.xsd is checked against cwmp-1-4.xsd alone).

Nothing is fetched from the network: the SOAP schemas come from the xmlschema
package (xmlschema/schemas/WSDL/), the broadband-forum.org URLs are mapped to
the files in schemas/bbf, and any other remote URL is refused
(``allow="local"``).

One adaptation, in memory only: cwmp-1-4.xsd both includes cwmp-1-3.xsd and
redefines it in three separate ``xs:redefine`` blocks, which xmlschema refuses
("can't change the 'redefine' attribute of a schema").  We load 1-4 with the
three blocks merged into a single ``xs:redefine`` (same components, same
order) and without the redundant ``xs:include`` (a redefine includes the
schema it redefines).  The files on disk are never modified.
"""

from __future__ import annotations

from pathlib import Path

import xmlschema
from lxml import etree

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "bbf"
_WSDL_DIR = Path(xmlschema.__file__).resolve().parent / "schemas" / "WSDL"

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC_NS = "http://schemas.xmlsoap.org/soap/encoding/"
_XS_NS = "http://www.w3.org/2001/XMLSchema"
_BBF_URL = "http://www.broadband-forum.org/cwmp/cwmp-1-{}.xsd"

CWMP_NAMESPACES = (
    "urn:dslforum-org:cwmp-1-0",
    "urn:dslforum-org:cwmp-1-1",
    "urn:dslforum-org:cwmp-1-2",
)

_LOCATIONS = {
    SOAP_ENV_NS: str(_WSDL_DIR / "soap-envelope.xsd"),
    SOAP_ENC_NS: str(_WSDL_DIR / "soap-encoding.xsd"),
}
_URI_MAP = {
    **{_BBF_URL.format(i): str(SCHEMA_DIR / f"cwmp-1-{i}.xsd") for i in range(5)},
    # the schemas import the SOAP namespaces by these (remote) locations
    SOAP_ENV_NS: _LOCATIONS[SOAP_ENV_NS],
    SOAP_ENC_NS: _LOCATIONS[SOAP_ENC_NS],
}

_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)

# module-level cache: loading the five schemas takes about a second
_SCHEMAS: dict[str, xmlschema.XMLSchema] = {}


def _uri_mapper(uri: str) -> str:
    return _URI_MAP.get(uri, uri)


def _load(source: str | bytes, base_url: str | None = None) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(
        source,
        base_url=base_url,
        locations=_LOCATIONS,
        uri_mapper=_uri_mapper,
        allow="local",  # no network, ever
    )


def _cwmp_1_4_source() -> bytes:
    root = etree.parse(str(SCHEMA_DIR / "cwmp-1-4.xsd"), _SAFE_PARSER).getroot()
    for include in root.findall(f"{{{_XS_NS}}}include"):
        root.remove(include)
    redefines = root.findall(f"{{{_XS_NS}}}redefine")
    assert redefines, "cwmp-1-4.xsd: expected xs:redefine blocks"
    for extra in redefines[1:]:
        for child in list(extra):
            redefines[0].append(child)
        root.remove(extra)
    return etree.tostring(root)


def schema(version: str) -> xmlschema.XMLSchema:
    """The schema for "1-0" ... "1-4" (cached)."""
    cached = _SCHEMAS.get(version)
    if cached is None:
        if version == "1-4":
            cached = _load(_cwmp_1_4_source(), base_url=str(SCHEMA_DIR))
        else:
            cached = _load(str(SCHEMA_DIR / f"cwmp-{version}.xsd"))
        _SCHEMAS[version] = cached
    return cached


def _soap_envelope_schema() -> xmlschema.XMLSchema:
    cached = _SCHEMAS.get("soap-envelope")
    if cached is None:
        cached = _SCHEMAS["soap-envelope"] = _load(_LOCATIONS[SOAP_ENV_NS])
    return cached


def schemas_for(namespace: str) -> list[tuple[str, xmlschema.XMLSchema]]:
    """(version, schema) pairs a message in ``namespace`` must satisfy."""
    if namespace == CWMP_NAMESPACES[0]:
        return [("1-0", schema("1-0"))]
    if namespace == CWMP_NAMESPACES[1]:
        return [("1-1", schema("1-1"))]
    if namespace == CWMP_NAMESPACES[2]:
        return [("1-2", schema("1-2")), ("1-4", schema("1-4"))]
    raise AssertionError(f"not a CWMP namespace: {namespace!r}")


def declared_in(namespace: str, element: str) -> list[str]:
    """Versions (of ``schemas_for(namespace)``) declaring a global ``element``."""
    return [v for v, s in schemas_for(namespace) if element in s.elements]


def _qname_parts(el: etree._Element) -> tuple[str | None, str]:
    q = etree.QName(el)
    return q.namespace, q.localname


def _snippet(el: etree._Element, limit: int = 600) -> str:
    text = etree.tostring(el, encoding="unicode")
    return text if len(text) <= limit else text[:limit] + "..."


class _Problem:
    """An xmlschema error, or a lookup failure xmlschema raises instead."""

    def __init__(self, reason: str | None, path: str | None) -> None:
        self.reason = reason
        self.path = path


def _errors(xsd: xmlschema.XMLSchema, el: etree._Element) -> list[_Problem]:
    try:
        return [_Problem(e.reason, e.path) for e in xsd.iter_errors(el)]
    except (KeyError, LookupError, ValueError, TypeError) as exc:
        # e.g. xsi:type naming a type no loaded schema defines ("xsd:base64")
        return [_Problem(f"{type(exc).__name__}: {exc}", None)]


def _check_element(el: etree._Element, where: str, problems: list[str]) -> None:
    ns, local = _qname_parts(el)
    if ns is None or ns not in CWMP_NAMESPACES:
        problems.append(f"{where}: <{local}> is not in a CWMP namespace (namespace {ns!r})")
        return
    # a serialized copy carries every in-scope namespace declaration, so
    # xsi:type="xsd:..." QNames resolve as they did in the envelope
    standalone = etree.fromstring(etree.tostring(el), _SAFE_PARSER)
    checked = 0
    for version, xsd in schemas_for(ns):
        if local not in xsd.elements:
            continue
        checked += 1
        errors = _errors(xsd, standalone)
        for err in errors[:5]:
            problems.append(
                f"{where}: <{local}> invalid against cwmp-{version}.xsd: {err.reason}"
                f" (at {err.path})"
            )
        if errors:
            problems.append(f"    element was: {_snippet(el)}")
    if checked == 0:
        versions = ", ".join(f"cwmp-{v}.xsd" for v, _ in schemas_for(ns))
        problems.append(f"{where}: <{local}> is not declared in {versions}")
    elif ns == CWMP_NAMESPACES[2] and local not in schema("1-4").elements:
        problems.append(f"{where}: <{local}> is not declared in cwmp-1-4.xsd")


def validate_envelope(xml_bytes: bytes) -> None:
    """Assert ``xml_bytes`` is a SOAP envelope whose CWMP parts match the XSDs."""
    try:
        root = etree.fromstring(xml_bytes, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise AssertionError(f"not well-formed XML: {exc}") from None
    ns, local = _qname_parts(root)
    assert (ns, local) == (SOAP_ENV_NS, "Envelope"), f"root is {{{ns}}}{local}, not soap:Envelope"

    problems: list[str] = []
    # SOAP 1.1 structure (Header?, Body, Fault layout).  The envelope schema's
    # wildcards are lax, so use a global map that also knows the CWMP types
    # named by xsi:type; the CWMP elements themselves are checked strictly below.
    body_ns = {etree.QName(el).namespace for el in root.iter() if isinstance(el.tag, str)}
    envelope_schema = _soap_envelope_schema()
    for ns_ in reversed(CWMP_NAMESPACES):
        if ns_ in body_ns:
            envelope_schema = schemas_for(ns_)[-1][1]
            break
    for err in _errors(envelope_schema, root)[:5]:
        problems.append(f"SOAP envelope: {err.reason} (at {err.path})")

    header = body = None
    for child in root:
        if not isinstance(child.tag, str):
            continue
        cns, clocal = _qname_parts(child)
        if cns == SOAP_ENV_NS and clocal == "Header":
            header = child
        elif cns == SOAP_ENV_NS and clocal == "Body":
            body = child
    if header is not None:
        for el in header:
            if isinstance(el.tag, str) and _qname_parts(el)[0] in CWMP_NAMESPACES:
                _check_element(el, "Header", problems)
    assert body is not None, "envelope has no soap:Body"
    items = [c for c in body if isinstance(c.tag, str)]
    assert len(items) == 1, f"soap:Body must hold exactly one element, holds {len(items)}"
    item = items[0]
    if _qname_parts(item) == (SOAP_ENV_NS, "Fault"):
        details = [
            c for c in item if isinstance(c.tag, str) and etree.QName(c).localname == "detail"
        ]
        assert len(details) == 1, "SOAP Fault without exactly one detail element"
        faults = [c for c in details[0] if isinstance(c.tag, str)]
        assert len(faults) == 1 and etree.QName(faults[0]).localname == "Fault", (
            "SOAP Fault detail must hold exactly one cwmp:Fault"
        )
        _check_element(faults[0], "Fault detail", problems)
    else:
        _check_element(item, "Body", problems)
    if problems:
        raise AssertionError(
            "envelope does not validate:\n  "
            + "\n  ".join(problems)
            + "\n--- document ---\n"
            + xml_bytes.decode("utf-8", "replace")[:3000]
        )
