"""CPE-side CWMP faults (TR-069 Amendment 6, Table A.7 "Fault codes", 9000-9032).

The runtime turns a :class:`CpeFault` raised by the parameter tree into a SOAP
Fault with ``cwmp:Fault`` detail; for SetParameterValues it also carries one
``SetParameterValuesFault`` per rejected parameter.
"""

from __future__ import annotations

from acs.cwmp.messages import SetParameterValuesFault

# The fault strings as the spec words them; the ACS matches on the code only, but
# operators read the string in logs.
FAULT_STRINGS: dict[int, str] = {
    9000: "Method not supported",
    9001: "Request denied (no reason specified)",
    9002: "Internal error",
    9003: "Invalid arguments",
    9004: "Resources exceeded",
    9005: "Invalid parameter name",
    9006: "Invalid parameter type",
    9007: "Invalid parameter value",
    9008: "Attempt to set a non-writable parameter",
    9009: "Notification request rejected",
    9010: "File transfer failure",
    9011: "Upload failure",
    9012: "File transfer server authentication failure",
    9013: "Unsupported protocol for file transfer",
    9014: "File transfer failure: unable to join multicast group",
    9015: "File transfer failure: unable to contact file server",
    9016: "File transfer failure: unable to access file",
    9017: "File transfer failure: unable to complete download",
    9018: "File transfer failure: file corrupted or otherwise unusable",
    9019: "File transfer failure: file authentication failure",
    9020: "File transfer failure: unable to complete download within specified time windows",
    9021: "Cancelation of file transfer not permitted in current transfer state",
    9022: "Invalid UUID Format",
    9023: "Unknown Execution Environment",
    9024: "Disabled Execution Environment",
    9025: "Deployment Unit to Execution Environment Mismatch",
    9026: "Duplicate Deployment Unit",
    9027: "System Resources Exceeded",
    9028: "Unknown Deployment Unit",
    9029: "Invalid Deployment Unit State",
    9030: "Invalid Deployment Unit Update - Downgrade not permitted",
    9031: "Invalid Deployment Unit Update - Version not specified",
    9032: "Invalid Deployment Unit Update - Version already exists",
}


def fault_string(code: int) -> str:
    """The spec's wording for a CPE fault code ("" for vendor codes 9800-9899)."""
    return FAULT_STRINGS.get(code, "")


class CpeFault(Exception):
    """An RPC the CPE refuses; ``code`` is the cwmp:Fault FaultCode."""

    def __init__(
        self,
        code: int,
        string: str | None = None,
        set_parameter_values_faults: list[SetParameterValuesFault] | None = None,
    ) -> None:
        self.code = code
        self.string = fault_string(code) if string is None else string
        self.set_parameter_values_faults: list[SetParameterValuesFault] = list(
            set_parameter_values_faults or []
        )
        super().__init__(f"{code} {self.string}")


def parameter_fault(name: str, code: int) -> SetParameterValuesFault:
    """One SetParameterValuesFault entry with the spec's string."""
    return SetParameterValuesFault(
        parameter_name=name, fault_code=code, fault_string=fault_string(code)
    )
