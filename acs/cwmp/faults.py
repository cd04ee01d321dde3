"""CWMP fault codes (TR-069 Amendment 6, Tables 58 and 59).

Names are those of the Broadband Forum schemas' documentation: ACS faults from
cwmp-1-4.xsd (which adds 8006), CPE faults from cwmp-1-2.xsd.  8000-8799 are
ACS faults and 9000-9799 CPE faults; 8800-8899 and 9800-9899 are reserved for
vendors.
"""

from __future__ import annotations

from typing import Final

# ---- ACS faults (the ACS answers a CPE request with these)
METHOD_NOT_SUPPORTED: Final = 8000
REQUEST_DENIED: Final = 8001
INTERNAL_ERROR: Final = 8002
INVALID_ARGUMENTS: Final = 8003
RESOURCES_EXCEEDED: Final = 8004
RETRY_REQUEST: Final = 8005
ACS_VERSION_INCOMPATIBLE: Final = 8006

# ---- CPE faults (a CPE answers an ACS request with these)
CPE_METHOD_NOT_SUPPORTED: Final = 9000
CPE_REQUEST_DENIED: Final = 9001
CPE_INTERNAL_ERROR: Final = 9002
CPE_INVALID_ARGUMENTS: Final = 9003
CPE_RESOURCES_EXCEEDED: Final = 9004
INVALID_PARAMETER_NAME: Final = 9005
INVALID_PARAMETER_TYPE: Final = 9006
INVALID_PARAMETER_VALUE: Final = 9007
NON_WRITABLE_PARAMETER: Final = 9008
NOTIFICATION_REQUEST_REJECTED: Final = 9009
FILE_TRANSFER_FAILURE: Final = 9010
UPLOAD_FAILURE: Final = 9011
FILE_TRANSFER_AUTHENTICATION_FAILURE: Final = 9012
UNSUPPORTED_TRANSFER_PROTOCOL: Final = 9013
TRANSFER_MULTICAST_JOIN_FAILURE: Final = 9014
TRANSFER_SERVER_UNREACHABLE: Final = 9015
TRANSFER_FILE_INACCESSIBLE: Final = 9016
TRANSFER_INCOMPLETE: Final = 9017
TRANSFER_FILE_CORRUPTED: Final = 9018
TRANSFER_FILE_AUTHENTICATION_FAILURE: Final = 9019
TRANSFER_OUTSIDE_TIME_WINDOWS: Final = 9020
CANCEL_TRANSFER_NOT_PERMITTED: Final = 9021
INVALID_UUID_FORMAT: Final = 9022
UNKNOWN_EXECUTION_ENVIRONMENT: Final = 9023
DISABLED_EXECUTION_ENVIRONMENT: Final = 9024
DU_EE_MISMATCH: Final = 9025
DUPLICATE_DEPLOYMENT_UNIT: Final = 9026
SYSTEM_RESOURCES_EXCEEDED: Final = 9027
UNKNOWN_DEPLOYMENT_UNIT: Final = 9028
INVALID_DEPLOYMENT_UNIT_STATE: Final = 9029
DU_UPDATE_DOWNGRADE_NOT_PERMITTED: Final = 9030
DU_UPDATE_VERSION_NOT_SPECIFIED: Final = 9031
DU_UPDATE_VERSION_EXISTS: Final = 9032

ACS_FAULTS: Final[dict[int, str]] = {
    8000: "Method not supported",
    8001: "Request denied (no reason specified)",
    8002: "Internal error",
    8003: "Invalid arguments",
    8004: "Resources exceeded",
    8005: "Retry request",
    8006: "ACS version incompatible with CPE",
}

# Verbatim from cwmp-1-2.xsd, including its spelling ("Deployement") and dashes.
CPE_FAULTS: Final[dict[int, str]] = {
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
    9018: "File transfer failure: file corrupted",
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
    9030: "Invalid Deployement Unit Update \u2013 Downgrade not permitted",
    9031: "Invalid Deployement Unit Update \u2013 Version not specified",
    9032: "Invalid Deployment Unit Update \u2013 Version already exists",
}

FAULT_NAMES: Final[dict[int, str]] = {**ACS_FAULTS, **CPE_FAULTS}

VENDOR_RANGES: Final = (range(8800, 8900), range(9800, 9900))


def is_vendor_fault(code: int) -> bool:
    return any(code in r for r in VENDOR_RANGES)


def is_acs_fault(code: int) -> bool:
    """8000-8899: faults the ACS sends (including the vendor range)."""
    return 8000 <= code <= 8899


def is_cpe_fault(code: int) -> bool:
    """9000-9899: faults the CPE sends (including the vendor range)."""
    return 9000 <= code <= 9899


def fault_name(code: int) -> str:
    """The spec's name for ``code``; "Vendor fault" for the vendor ranges."""
    name = FAULT_NAMES.get(code)
    if name is not None:
        return name
    if is_vendor_fault(code):
        return "Vendor fault"
    if 8000 <= code <= 8799:
        return "Unknown ACS fault"
    if 9000 <= code <= 9799:
        return "Unknown CPE fault"
    return "Unknown fault"
