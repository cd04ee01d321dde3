"""One typed class per CWMP RPC, response and fault (TR-069 Amendment 6, Annex A).

Names follow the spec: a class is named after the SOAP body element it maps to
(``Inform``, ``GetParameterValuesResponse`` ...), and fields are the spec's
argument names in snake_case. The codec in :mod:`acs.cwmp.soap` turns these into
XML and back; nothing here knows about XML, sockets or the database.

Values on the wire are text with an ``xsi:type``; we keep both exactly as the
CPE sent them (``ParameterValueStruct.value`` / ``xsd_type``) so that storing and
echoing a value never changes its type.

Times are timezone-aware ``datetime`` objects, or ``None`` for the spec's
"Unknown Time" (0001-01-01T00:00:00Z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal

Direction = Literal["cpe-to-acs", "acs-to-cpe"]


# --------------------------------------------------------------------------- structs


@dataclass(slots=True)
class DeviceIdStruct:
    manufacturer: str
    oui: str
    product_class: str
    serial_number: str


@dataclass(slots=True)
class EventStruct:
    event_code: str
    command_key: str = ""


@dataclass(slots=True)
class ParameterValueStruct:
    name: str
    value: str
    xsd_type: str = "xsd:string"  # as on the wire, e.g. "xsd:unsignedInt"


@dataclass(slots=True)
class ParameterInfoStruct:
    name: str
    writable: bool


@dataclass(slots=True)
class ParameterAttributeStruct:
    name: str
    notification: int  # 0 off, 1 passive, 2 active (3-6 in later amendments)
    access_list: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SetParameterAttributesStruct:
    name: str
    notification_change: bool
    notification: int
    access_list_change: bool
    access_list: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FaultStruct:
    fault_code: int = 0
    fault_string: str = ""


@dataclass(slots=True)
class SetParameterValuesFault:
    parameter_name: str
    fault_code: int
    fault_string: str = ""


@dataclass(slots=True)
class QueuedTransferStruct:
    command_key: str
    state: int  # 1 not yet started, 2 in progress, 3 completed


@dataclass(slots=True)
class AllQueuedTransferStruct:
    command_key: str
    state: int
    is_download: bool
    file_type: str
    file_size: int
    target_file_name: str


@dataclass(slots=True)
class TimeWindowStruct:
    window_start: int
    window_end: int
    window_mode: str  # "1 At Any Time" | "2 Immediately" | "3 When Idle" | "4 Confirmation Needed"
    user_message: str = ""
    max_retries: int = 0


@dataclass(slots=True)
class ArgStruct:
    name: str
    value: str


@dataclass(slots=True)
class InstallOpStruct:
    url: str
    uuid: str = ""
    username: str = ""
    password: str = ""
    execution_env_ref: str = ""


@dataclass(slots=True)
class UpdateOpStruct:
    uuid: str = ""
    version: str = ""
    url: str = ""
    username: str = ""
    password: str = ""


@dataclass(slots=True)
class UninstallOpStruct:
    uuid: str
    version: str = ""
    execution_env_ref: str = ""


@dataclass(slots=True)
class OpResultStruct:
    uuid: str
    deployment_unit_ref: str
    version: str
    current_state: str
    resolved: bool
    execution_unit_ref_list: str
    start_time: datetime | None
    complete_time: datetime | None
    fault: FaultStruct = field(default_factory=FaultStruct)


@dataclass(slots=True)
class AutonOpResultStruct:
    uuid: str
    deployment_unit_ref: str
    version: str
    current_state: str
    resolved: bool
    execution_unit_ref_list: str
    start_time: datetime | None
    complete_time: datetime | None
    fault: FaultStruct = field(default_factory=FaultStruct)
    operation_performed: str = ""  # "Install" | "Update" | "Uninstall"


# --------------------------------------------------------------------------- base


@dataclass(slots=True)
class Message:
    """Base of every SOAP body we understand.

    ``rpc`` is the method name (without "Response"); ``is_response`` tells a
    request from a response; ``direction`` says who sends the *request*.
    """

    rpc: ClassVar[str]
    is_response: ClassVar[bool] = False
    direction: ClassVar[Direction]

    @property
    def element_name(self) -> str:
        return self.rpc + ("Response" if self.is_response else "")


# ------------------------------------------------- methods the CPE calls on the ACS


@dataclass(slots=True)
class Inform(Message):
    rpc: ClassVar[str] = "Inform"
    direction: ClassVar[Direction] = "cpe-to-acs"
    device_id: DeviceIdStruct
    events: list[EventStruct]
    max_envelopes: int
    current_time: datetime | None
    retry_count: int
    parameter_list: list[ParameterValueStruct]


@dataclass(slots=True)
class InformResponse(Message):
    rpc: ClassVar[str] = "Inform"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"
    max_envelopes: int = 1


@dataclass(slots=True)
class TransferComplete(Message):
    rpc: ClassVar[str] = "TransferComplete"
    direction: ClassVar[Direction] = "cpe-to-acs"
    command_key: str
    fault: FaultStruct
    start_time: datetime | None
    complete_time: datetime | None


@dataclass(slots=True)
class TransferCompleteResponse(Message):
    rpc: ClassVar[str] = "TransferComplete"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"


@dataclass(slots=True)
class AutonomousTransferComplete(Message):
    rpc: ClassVar[str] = "AutonomousTransferComplete"
    direction: ClassVar[Direction] = "cpe-to-acs"
    announce_url: str
    transfer_url: str
    is_download: bool
    file_type: str
    file_size: int
    target_file_name: str
    fault: FaultStruct
    start_time: datetime | None
    complete_time: datetime | None


@dataclass(slots=True)
class AutonomousTransferCompleteResponse(Message):
    rpc: ClassVar[str] = "AutonomousTransferComplete"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"


@dataclass(slots=True)
class RequestDownload(Message):
    rpc: ClassVar[str] = "RequestDownload"
    direction: ClassVar[Direction] = "cpe-to-acs"
    file_type: str
    file_type_arg: list[ArgStruct] = field(default_factory=list)


@dataclass(slots=True)
class RequestDownloadResponse(Message):
    rpc: ClassVar[str] = "RequestDownload"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"


@dataclass(slots=True)
class Kicked(Message):
    rpc: ClassVar[str] = "Kicked"
    direction: ClassVar[Direction] = "cpe-to-acs"
    command: str
    referer: str
    arg: str
    next: str


@dataclass(slots=True)
class KickedResponse(Message):
    rpc: ClassVar[str] = "Kicked"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"
    next_url: str = ""


@dataclass(slots=True)
class DUStateChangeComplete(Message):
    rpc: ClassVar[str] = "DUStateChangeComplete"
    direction: ClassVar[Direction] = "cpe-to-acs"
    results: list[OpResultStruct]
    command_key: str


@dataclass(slots=True)
class DUStateChangeCompleteResponse(Message):
    rpc: ClassVar[str] = "DUStateChangeComplete"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"


@dataclass(slots=True)
class AutonomousDUStateChangeComplete(Message):
    rpc: ClassVar[str] = "AutonomousDUStateChangeComplete"
    direction: ClassVar[Direction] = "cpe-to-acs"
    results: list[AutonOpResultStruct]


@dataclass(slots=True)
class AutonomousDUStateChangeCompleteResponse(Message):
    rpc: ClassVar[str] = "AutonomousDUStateChangeComplete"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "cpe-to-acs"


# GetRPCMethods goes both ways; the same two classes serve both directions, so
# their ``direction`` only names the usual one (ACS asking the CPE).


@dataclass(slots=True)
class GetRPCMethods(Message):
    rpc: ClassVar[str] = "GetRPCMethods"
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class GetRPCMethodsResponse(Message):
    rpc: ClassVar[str] = "GetRPCMethods"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    method_list: list[str] = field(default_factory=list)


# ------------------------------------------------- methods the ACS calls on the CPE


@dataclass(slots=True)
class GetParameterNames(Message):
    rpc: ClassVar[str] = "GetParameterNames"
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_path: str
    next_level: bool


@dataclass(slots=True)
class GetParameterNamesResponse(Message):
    rpc: ClassVar[str] = "GetParameterNames"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_list: list[ParameterInfoStruct] = field(default_factory=list)


@dataclass(slots=True)
class GetParameterValues(Message):
    rpc: ClassVar[str] = "GetParameterValues"
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_names: list[str]


@dataclass(slots=True)
class GetParameterValuesResponse(Message):
    rpc: ClassVar[str] = "GetParameterValues"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_list: list[ParameterValueStruct] = field(default_factory=list)


@dataclass(slots=True)
class SetParameterValues(Message):
    rpc: ClassVar[str] = "SetParameterValues"
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_list: list[ParameterValueStruct]
    parameter_key: str = ""


@dataclass(slots=True)
class SetParameterValuesResponse(Message):
    rpc: ClassVar[str] = "SetParameterValues"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    status: int = 0  # 0 applied, 1 applied and committed only after a reboot


@dataclass(slots=True)
class GetParameterAttributes(Message):
    rpc: ClassVar[str] = "GetParameterAttributes"
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_names: list[str]


@dataclass(slots=True)
class GetParameterAttributesResponse(Message):
    rpc: ClassVar[str] = "GetParameterAttributes"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_list: list[ParameterAttributeStruct] = field(default_factory=list)


@dataclass(slots=True)
class SetParameterAttributes(Message):
    rpc: ClassVar[str] = "SetParameterAttributes"
    direction: ClassVar[Direction] = "acs-to-cpe"
    parameter_list: list[SetParameterAttributesStruct]


@dataclass(slots=True)
class SetParameterAttributesResponse(Message):
    rpc: ClassVar[str] = "SetParameterAttributes"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class AddObject(Message):
    rpc: ClassVar[str] = "AddObject"
    direction: ClassVar[Direction] = "acs-to-cpe"
    object_name: str  # ends with "."
    parameter_key: str = ""


@dataclass(slots=True)
class AddObjectResponse(Message):
    rpc: ClassVar[str] = "AddObject"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    instance_number: int = 0
    status: int = 0


@dataclass(slots=True)
class DeleteObject(Message):
    rpc: ClassVar[str] = "DeleteObject"
    direction: ClassVar[Direction] = "acs-to-cpe"
    object_name: str  # "...Obj.<i>."
    parameter_key: str = ""


@dataclass(slots=True)
class DeleteObjectResponse(Message):
    rpc: ClassVar[str] = "DeleteObject"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    status: int = 0


@dataclass(slots=True)
class Reboot(Message):
    rpc: ClassVar[str] = "Reboot"
    direction: ClassVar[Direction] = "acs-to-cpe"
    command_key: str = ""


@dataclass(slots=True)
class RebootResponse(Message):
    rpc: ClassVar[str] = "Reboot"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class FactoryReset(Message):
    rpc: ClassVar[str] = "FactoryReset"
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class FactoryResetResponse(Message):
    rpc: ClassVar[str] = "FactoryReset"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class Download(Message):
    rpc: ClassVar[str] = "Download"
    direction: ClassVar[Direction] = "acs-to-cpe"
    command_key: str
    file_type: str  # "1 Firmware Upgrade Image", "3 Vendor Configuration File", ...
    url: str
    username: str = ""
    password: str = ""
    file_size: int = 0
    target_file_name: str = ""
    delay_seconds: int = 0
    success_url: str = ""
    failure_url: str = ""


@dataclass(slots=True)
class DownloadResponse(Message):
    rpc: ClassVar[str] = "Download"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    status: int = 1  # 0 completed, 1 not yet completed (TransferComplete follows)
    start_time: datetime | None = None
    complete_time: datetime | None = None


@dataclass(slots=True)
class Upload(Message):
    rpc: ClassVar[str] = "Upload"
    direction: ClassVar[Direction] = "acs-to-cpe"
    command_key: str
    file_type: str  # "1 Vendor Configuration File", "2 Vendor Log File", ...
    url: str
    username: str = ""
    password: str = ""
    delay_seconds: int = 0


@dataclass(slots=True)
class UploadResponse(Message):
    rpc: ClassVar[str] = "Upload"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    status: int = 1
    start_time: datetime | None = None
    complete_time: datetime | None = None


@dataclass(slots=True)
class ScheduleInform(Message):
    rpc: ClassVar[str] = "ScheduleInform"
    direction: ClassVar[Direction] = "acs-to-cpe"
    delay_seconds: int
    command_key: str = ""


@dataclass(slots=True)
class ScheduleInformResponse(Message):
    rpc: ClassVar[str] = "ScheduleInform"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class ScheduleDownload(Message):
    rpc: ClassVar[str] = "ScheduleDownload"
    direction: ClassVar[Direction] = "acs-to-cpe"
    command_key: str
    file_type: str
    url: str
    username: str = ""
    password: str = ""
    file_size: int = 0
    target_file_name: str = ""
    time_window_list: list[TimeWindowStruct] = field(default_factory=list)


@dataclass(slots=True)
class ScheduleDownloadResponse(Message):
    rpc: ClassVar[str] = "ScheduleDownload"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class CancelTransfer(Message):
    rpc: ClassVar[str] = "CancelTransfer"
    direction: ClassVar[Direction] = "acs-to-cpe"
    command_key: str


@dataclass(slots=True)
class CancelTransferResponse(Message):
    rpc: ClassVar[str] = "CancelTransfer"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class GetQueuedTransfers(Message):
    rpc: ClassVar[str] = "GetQueuedTransfers"
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class GetQueuedTransfersResponse(Message):
    rpc: ClassVar[str] = "GetQueuedTransfers"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    transfer_list: list[QueuedTransferStruct] = field(default_factory=list)


@dataclass(slots=True)
class GetAllQueuedTransfers(Message):
    rpc: ClassVar[str] = "GetAllQueuedTransfers"
    direction: ClassVar[Direction] = "acs-to-cpe"


@dataclass(slots=True)
class GetAllQueuedTransfersResponse(Message):
    rpc: ClassVar[str] = "GetAllQueuedTransfers"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    transfer_list: list[AllQueuedTransferStruct] = field(default_factory=list)


@dataclass(slots=True)
class ChangeDUState(Message):
    rpc: ClassVar[str] = "ChangeDUState"
    direction: ClassVar[Direction] = "acs-to-cpe"
    operations: list[InstallOpStruct | UpdateOpStruct | UninstallOpStruct]
    command_key: str = ""


@dataclass(slots=True)
class ChangeDUStateResponse(Message):
    rpc: ClassVar[str] = "ChangeDUState"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"


# --------------------------------------------------------------------------- faults


@dataclass(slots=True)
class Fault(Message):
    """A SOAP Fault carrying cwmp:Fault: the answer to a request that failed.

    ``rpc`` is "Fault"; a Fault counts as a response.  Codes 8000-8899 come
    from the ACS, 9000-9899 from the CPE (see :mod:`acs.cwmp.faults`).
    """

    rpc: ClassVar[str] = "Fault"
    is_response: ClassVar[bool] = True
    direction: ClassVar[Direction] = "acs-to-cpe"
    fault_code: int
    fault_string: str = ""
    set_parameter_values_faults: list[SetParameterValuesFault] = field(default_factory=list)

    @property
    def element_name(self) -> str:
        return "Fault"


@dataclass(slots=True)
class UnknownMethod(Message):
    """A body element whose local name is no CWMP method we know.

    The codec returns it instead of failing, so the session can answer with
    fault 8000 (ACS side) or 9000 (CPE side) rather than dropping the session.
    """

    rpc: ClassVar[str] = "Unknown"
    direction: ClassVar[Direction] = "cpe-to-acs"
    name: str = ""

    @property
    def element_name(self) -> str:
        return self.name


# Lookup by element local name, used by the codec.  Built from the module's
# names rather than Message.__subclasses__(): dataclass(slots=True) replaces
# each class, and the discarded originals would linger among the subclasses.
MESSAGE_TYPES: dict[str, type[Message]] = {
    obj.rpc + ("Response" if obj.is_response else ""): obj
    for obj in list(globals().values())
    if isinstance(obj, type)
    and issubclass(obj, Message)
    and obj not in (Message, Fault, UnknownMethod)
}
