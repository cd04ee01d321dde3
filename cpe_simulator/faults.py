"""CPE-side CWMP faults (TR-069 Amendment 6, Table A.7 "Fault codes", 9000-9032).

The runtime turns a :class:`CpeFault` raised by the parameter tree into a SOAP
Fault with ``cwmp:Fault`` detail; for SetParameterValues it also carries one
``SetParameterValuesFault`` per rejected parameter.
"""

from __future__ import annotations

from acs.cwmp.faults import CPE_FAULTS
from acs.cwmp.messages import SetParameterValuesFault

# The fault strings as the spec words them (the ACS matches on the code only,
# but operators read the string in logs): one table, the codec's.
FAULT_STRINGS: dict[int, str] = dict(CPE_FAULTS)


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
