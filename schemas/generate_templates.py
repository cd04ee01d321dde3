"""Generate the CPE simulator's data-model templates from the Broadband Forum full XML.

Run from the repository root::

    .venv/bin/python schemas/generate_templates.py [--source DIR] [--out DIR]

Types, writability, defaults, enumerations, ranges and sizes come from the
official model; what a home gateway *has* (which objects, how many instances)
and the realistic values the model leaves open are chosen here. The output is
deterministic so that a test can compare the committed JSON with a fresh run.
See schemas/README.md for the JSON shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE / "bbf"

# Parameters/objects with these statuses are not implemented by a current device.
_RETIRED = {"deprecated", "obsoleted", "deleted"}
_XSD_TYPES = {
    "string": "xsd:string",
    "boolean": "xsd:boolean",
    "unsignedInt": "xsd:unsignedInt",
    "int": "xsd:int",
    "unsignedLong": "xsd:unsignedLong",
    "long": "xsd:long",
    "dateTime": "xsd:dateTime",
    "base64": "xsd:base64",
    "hexBinary": "xsd:hexBinary",
    "decimal": "xsd:decimal",
}
UNKNOWN_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class ModelSpec:
    """What one gateway template contains."""

    name: str
    source: str
    root: str
    # Object patterns (as in the XML) to include, in any order; each table lists its
    # instance count (0 = an empty table the ACS can fill with AddObject).
    objects: dict[str, int]
    # Deprecated parameters (pattern paths) that real devices of this family still report.
    keep_deprecated: frozenset[str]
    # Concrete path -> identity key resolved per device (see cpe_simulator.datamodel).
    identity: dict[str, str]
    # Extra Forced Inform parameters beyond the model's forcedInform="true" ones.
    extra_forced_inform: tuple[str, ...]
    # Concrete path -> realistic value, overriding the generic guess.
    values: dict[str, str]
    boolean_style: tuple[str, str]  # how this vendor writes true/false


def _diagnostics_defaults(base: str, ping: str, trace: str) -> dict[str, str]:
    return {
        base + ping + "Timeout": "5000",
        base + ping + "NumberOfRepetitions": "4",
        base + ping + "DataBlockSize": "64",
        base + trace + "Timeout": "5000",
        base + trace + "NumberOfTries": "3",
        base + trace + "DataBlockSize": "38",
        base + trace + "MaxHopCount": "30",
    }


# ----------------------------------------------------------------------------- TR-181

_D = "Device."
TR181 = ModelSpec(
    name="tr181-gateway",
    source="tr-181-2-17-0-cwmp-full.xml",
    root=_D,
    objects={
        "Device.": 1,
        "Device.DeviceInfo.": 1,
        "Device.DeviceInfo.MemoryStatus.": 1,
        "Device.DeviceInfo.ProcessStatus.": 1,
        "Device.DeviceInfo.TemperatureStatus.": 1,
        "Device.DeviceInfo.NetworkProperties.": 1,
        "Device.DeviceInfo.VendorConfigFile.{i}.": 0,
        "Device.ManagementServer.": 1,
        "Device.ManagementServer.InformParameter.{i}.": 0,
        "Device.Time.": 1,
        "Device.UserInterface.": 1,
        "Device.Ethernet.": 1,
        "Device.Ethernet.Interface.{i}.": 4,
        "Device.Ethernet.Interface.{i}.Stats.": 1,
        "Device.Ethernet.Link.{i}.": 2,
        "Device.WiFi.": 1,
        "Device.WiFi.Radio.{i}.": 2,
        "Device.WiFi.Radio.{i}.Stats.": 1,
        "Device.WiFi.SSID.{i}.": 4,
        "Device.WiFi.SSID.{i}.Stats.": 1,
        "Device.WiFi.AccessPoint.{i}.": 4,
        "Device.WiFi.AccessPoint.{i}.Security.": 1,
        "Device.WiFi.AccessPoint.{i}.WPS.": 1,
        "Device.IP.": 1,
        "Device.IP.Interface.{i}.": 2,
        "Device.IP.Interface.{i}.IPv4Address.{i}.": 1,
        "Device.IP.Interface.{i}.IPv6Address.{i}.": 1,
        "Device.IP.Interface.{i}.Stats.": 1,
        # TR-143 diagnostics (the simulator runs them: cpe_simulator/diagnostics.py)
        "Device.IP.Diagnostics.": 1,
        "Device.IP.Diagnostics.IPPing.": 1,
        "Device.IP.Diagnostics.TraceRoute.": 1,
        "Device.IP.Diagnostics.TraceRoute.RouteHops.{i}.": 0,
        "Device.IP.Diagnostics.DownloadDiagnostics.": 1,
        "Device.IP.Diagnostics.DownloadDiagnostics.PerConnectionResult.{i}.": 0,
        "Device.IP.Diagnostics.UploadDiagnostics.": 1,
        "Device.IP.Diagnostics.UploadDiagnostics.PerConnectionResult.{i}.": 0,
        "Device.IP.Diagnostics.UDPEchoDiagnostics.": 1,
        "Device.IP.Diagnostics.ServerSelectionDiagnostics.": 1,
        "Device.Routing.": 1,
        "Device.Routing.Router.{i}.": 1,
        "Device.Routing.Router.{i}.IPv4Forwarding.{i}.": 1,
        "Device.Hosts.": 1,
        "Device.Hosts.Host.{i}.": 8,
        "Device.Hosts.Host.{i}.IPv4Address.{i}.": 1,
        "Device.DNS.": 1,
        "Device.DNS.Client.": 1,
        "Device.DNS.Client.Server.{i}.": 2,
        "Device.DNS.Relay.": 1,
        "Device.DHCPv4.": 1,
        "Device.DHCPv4.Client.{i}.": 1,
        "Device.DHCPv4.Server.": 1,
        "Device.DHCPv4.Server.Pool.{i}.": 1,
        "Device.DHCPv4.Server.Pool.{i}.StaticAddress.{i}.": 0,
        "Device.NAT.": 1,
        "Device.NAT.InterfaceSetting.{i}.": 1,
        "Device.NAT.PortMapping.{i}.": 0,
        "Device.Firewall.": 1,
        "Device.Users.": 1,
        "Device.Users.User.{i}.": 2,
        # TR-157 software modules: one execution environment the ACS installs
        # deployment units into (ChangeDUState); the DU and EU tables start empty
        "Device.SoftwareModules.": 1,
        "Device.SoftwareModules.ExecEnv.{i}.": 1,
        "Device.SoftwareModules.DeploymentUnit.{i}.": 0,
        "Device.SoftwareModules.ExecutionUnit.{i}.": 0,
    },
    keep_deprecated=frozenset(),
    identity={
        "Device.DeviceInfo.Manufacturer": "manufacturer",
        "Device.DeviceInfo.ManufacturerOUI": "oui",
        "Device.DeviceInfo.ProductClass": "product_class",
        "Device.DeviceInfo.ModelName": "model_name",
        "Device.DeviceInfo.SerialNumber": "serial_number",
        "Device.DeviceInfo.SoftwareVersion": "software_version",
        "Device.DeviceInfo.HardwareVersion": "hardware_version",
        "Device.DeviceInfo.UpTime": "uptime",
        "Device.Time.CurrentLocalTime": "current_time",
        "Device.ManagementServer.URL": "acs_url",
        "Device.ManagementServer.Username": "acs_username",
        "Device.ManagementServer.Password": "acs_password",
        "Device.ManagementServer.ConnectionRequestURL": "connection_request_url",
        "Device.ManagementServer.ConnectionRequestUsername": "connection_request_username",
        "Device.ManagementServer.ConnectionRequestPassword": "connection_request_password",
        **{f"Device.Ethernet.Interface.{n}.MACAddress": f"mac:{n}" for n in range(1, 5)},
        "Device.Ethernet.Link.1.MACAddress": "mac:0",
        "Device.Ethernet.Link.2.MACAddress": "mac:5",
        **{f"Device.WiFi.SSID.{n}.MACAddress": f"mac:{5 + n}" for n in range(1, 5)},
        **{f"Device.WiFi.SSID.{n}.BSSID": f"mac:{5 + n}" for n in range(1, 5)},
        **{f"Device.WiFi.SSID.{n}.SSID": f"ssid:{n}" for n in range(1, 5)},
        **{f"Device.WiFi.AccessPoint.{n}.Security.KeyPassphrase": "wifi_key" for n in range(1, 5)},
        **{f"Device.Hosts.Host.{n}.PhysAddress": f"host_mac:{n}" for n in range(1, 9)},
        "Device.IP.Interface.2.IPv4Address.1.IPAddress": "wan_ip",
        "Device.IP.Interface.2.IPv6Address.1.IPAddress": "wan_ipv6",
        "Device.DHCPv4.Client.1.IPAddress": "wan_ip",
    },
    extra_forced_inform=("Device.IP.Interface.2.IPv4Address.1.IPAddress",),
    values={
        # the tests the simulator runs (over IPv4 loopback), and how
        **{
            f"Device.IP.Diagnostics.IPv4{t}Supported": "true"
            for t in ("Ping", "TraceRoute", "DownloadDiagnostics", "UploadDiagnostics")
            + ("UDPEchoDiagnostics", "ServerSelectionDiagnostics")
        },
        "Device.IP.Diagnostics.DownloadDiagnostics.DownloadTransports": "HTTP",
        "Device.IP.Diagnostics.UploadDiagnostics.UploadTransports": "HTTP",
        # a gateway's own defaults where an ACS sets only the host (the model's
        # minimum, 1 ms, is no timeout a vendor ships)
        **_diagnostics_defaults("Device.IP.Diagnostics.", "IPPing.", "TraceRoute."),
        "Device.IP.Diagnostics.UDPEchoDiagnostics.Timeout": "5000",
        "Device.IP.Diagnostics.ServerSelectionDiagnostics.Timeout": "5000",
        "Device.RootDataModelVersion": "2.17",
        "Device.DeviceInfo.Description": "Home gateway (simulated)",
        "Device.DeviceInfo.ProvisioningCode": "",
        "Device.DeviceInfo.FirstUseDate": "2026-01-15T08:00:00Z",
        "Device.DeviceInfo.MemoryStatus.Total": "524288",
        "Device.DeviceInfo.MemoryStatus.Free": "262144",
        "Device.DeviceInfo.ProcessStatus.CPUUsage": "7",
        "Device.DeviceInfo.TemperatureStatus.TemperatureSensorNumberOfEntries": "0",
        "Device.ManagementServer.PeriodicInformEnable": "true",
        "Device.ManagementServer.HTTPCompressionSupported": "GZIP,Deflate",
        "Device.ManagementServer.PeriodicInformInterval": "3600",
        "Device.ManagementServer.PeriodicInformTime": UNKNOWN_TIME,
        "Device.ManagementServer.CWMPRetryMinimumWaitInterval": "5",
        "Device.ManagementServer.CWMPRetryIntervalMultiplier": "2000",
        "Device.ManagementServer.DefaultActiveNotificationThrottle": "0",
        "Device.ManagementServer.SupportedConnReqMethods": "HTTP",
        "Device.ManagementServer.InstanceMode": "InstanceNumber",
        "Device.Time.Enable": "true",
        "Device.Time.Status": "Synchronized",
        "Device.Time.LocalTimeZone": "CET-1CEST,M3.5.0,M10.5.0/3",
        "Device.WiFi.Radio.1.OperatingFrequencyBand": "2.4GHz",
        "Device.WiFi.Radio.1.SupportedFrequencyBands": "2.4GHz",
        "Device.WiFi.Radio.1.Channel": "6",
        "Device.WiFi.Radio.1.RegulatoryDomain": "DE ",
        "Device.WiFi.Radio.2.RegulatoryDomain": "DE ",
        "Device.WiFi.Radio.1.OperatingStandards": "b,g,n,ax",
        "Device.WiFi.Radio.1.SupportedStandards": "b,g,n,ax",
        "Device.WiFi.Radio.1.OperatingChannelBandwidth": "20MHz",
        "Device.WiFi.Radio.1.SupportedOperatingChannelBandwidths": "20MHz,40MHz",
        "Device.WiFi.Radio.1.PossibleChannels": "1-13",
        "Device.WiFi.Radio.2.OperatingFrequencyBand": "5GHz",
        "Device.WiFi.Radio.2.SupportedFrequencyBands": "5GHz",
        "Device.WiFi.Radio.2.Channel": "36",
        "Device.WiFi.Radio.2.OperatingStandards": "a,n,ac,ax",
        "Device.WiFi.Radio.2.SupportedStandards": "a,n,ac,ax",
        "Device.WiFi.Radio.2.OperatingChannelBandwidth": "80MHz",
        "Device.WiFi.Radio.2.SupportedOperatingChannelBandwidths": "20MHz,40MHz,80MHz,160MHz",
        "Device.WiFi.Radio.2.PossibleChannels": "36,40,44,48,52,56,60,64,100,104,108,112",
        "Device.WiFi.SSID.1.LowerLayers": "Device.WiFi.Radio.1.",
        "Device.WiFi.SSID.2.LowerLayers": "Device.WiFi.Radio.2.",
        "Device.WiFi.SSID.3.LowerLayers": "Device.WiFi.Radio.1.",
        "Device.WiFi.SSID.4.LowerLayers": "Device.WiFi.Radio.2.",
        "Device.WiFi.SSID.3.Enable": "false",
        "Device.WiFi.SSID.4.Enable": "false",
        "Device.WiFi.SSID.3.Status": "Down",
        "Device.WiFi.SSID.4.Status": "Down",
        **{
            f"Device.WiFi.AccessPoint.{n}.SSIDReference": f"Device.WiFi.SSID.{n}."
            for n in range(1, 5)
        },
        **{
            f"Device.WiFi.AccessPoint.{n}.Security.ModeEnabled": "WPA2-Personal"
            for n in range(1, 5)
        },
        **{
            f"Device.WiFi.AccessPoint.{n}.Security.ModesSupported": (
                "None,WPA2-Personal,WPA3-Personal,WPA3-Personal-Transition"
            )
            for n in range(1, 5)
        },
        **{
            f"Device.WiFi.AccessPoint.{n}.WPS.ConfigMethodsSupported": "PushButton,PIN"
            for n in range(1, 5)
        },
        **{
            f"Device.WiFi.AccessPoint.{n}.WPS.ConfigMethodsEnabled": "PushButton"
            for n in range(1, 5)
        },
        "Device.Ethernet.Link.1.LowerLayers": (
            "Device.Ethernet.Interface.1.,Device.Ethernet.Interface.2.,"
            "Device.Ethernet.Interface.3.,Device.WiFi.SSID.1.,Device.WiFi.SSID.2."
        ),
        "Device.Ethernet.Link.2.LowerLayers": "Device.Ethernet.Interface.4.",
        "Device.Ethernet.Interface.4.Upstream": "true",
        "Device.IP.IPv4Capable": "true",
        "Device.IP.IPv4Enable": "true",
        "Device.IP.IPv4Status": "Enabled",
        "Device.IP.IPv6Capable": "true",
        "Device.IP.IPv6Enable": "true",
        "Device.IP.IPv6Status": "Enabled",
        "Device.IP.ULAPrefix": "fd12:3456:789a::/48",
        "Device.IP.Interface.1.Name": "br-lan",
        "Device.IP.Interface.1.LowerLayers": "Device.Ethernet.Link.1.",
        "Device.IP.Interface.2.Name": "wan",
        "Device.IP.Interface.2.LowerLayers": "Device.Ethernet.Link.2.",
        "Device.IP.Interface.1.IPv4Address.1.IPAddress": "192.168.1.1",
        "Device.IP.Interface.1.IPv4Address.1.SubnetMask": "255.255.255.0",
        "Device.IP.Interface.1.IPv4Address.1.AddressingType": "Static",
        "Device.IP.Interface.2.IPv4Address.1.SubnetMask": "255.192.0.0",
        "Device.IP.Interface.2.IPv4Address.1.AddressingType": "DHCP",
        "Device.IP.Interface.1.IPv6Address.1.IPAddress": "fe80::1",
        "Device.IP.Interface.1.IPv6Address.1.Origin": "WellKnown",
        "Device.IP.Interface.2.IPv6Address.1.Origin": "DHCPv6",
        "Device.Routing.Router.1.IPv4Forwarding.1.DestIPAddress": "",
        "Device.Routing.Router.1.IPv4Forwarding.1.GatewayIPAddress": "100.64.0.1",
        "Device.Routing.Router.1.IPv4Forwarding.1.Interface": "Device.IP.Interface.2.",
        "Device.Routing.Router.1.IPv4Forwarding.1.Origin": "DHCPv4",
        "Device.DNS.Client.Server.1.DNSServer": "9.9.9.9",
        "Device.DNS.Client.Server.2.DNSServer": "1.1.1.1",
        "Device.DNS.Client.Server.1.Interface": "Device.IP.Interface.2.",
        "Device.DNS.Client.Server.2.Interface": "Device.IP.Interface.2.",
        "Device.DNS.Client.Server.1.Type": "DHCPv4",
        "Device.DNS.Client.Server.2.Type": "DHCPv4",
        "Device.DHCPv4.Client.1.Interface": "Device.IP.Interface.2.",
        "Device.DHCPv4.Client.1.DHCPStatus": "Bound",
        "Device.DHCPv4.Client.1.SubnetMask": "255.192.0.0",
        "Device.DHCPv4.Client.1.IPRouters": "100.64.0.1",
        "Device.DHCPv4.Client.1.DNSServers": "9.9.9.9,1.1.1.1",
        "Device.DHCPv4.Client.1.LeaseTimeRemaining": "86400",
        "Device.DHCPv4.Server.Enable": "true",
        "Device.DHCPv4.Server.Pool.1.Interface": "Device.IP.Interface.1.",
        "Device.DHCPv4.Server.Pool.1.MinAddress": "192.168.1.100",
        "Device.DHCPv4.Server.Pool.1.MaxAddress": "192.168.1.249",
        "Device.DHCPv4.Server.Pool.1.SubnetMask": "255.255.255.0",
        "Device.DHCPv4.Server.Pool.1.DNSServers": "192.168.1.1",
        "Device.DHCPv4.Server.Pool.1.DomainName": "home.lan",
        "Device.DHCPv4.Server.Pool.1.IPRouters": "192.168.1.1",
        "Device.DHCPv4.Server.Pool.1.LeaseTime": "86400",
        "Device.NAT.InterfaceSetting.1.Interface": "Device.IP.Interface.2.",
        "Device.Firewall.Enable": "true",
        "Device.Firewall.Config": "Low",
        "Device.Users.User.1.Username": "admin",
        "Device.Users.User.2.Username": "support",
        "Device.Users.User.2.Enable": "false",
        "Device.UserInterface.PasswordRequired": "true",
        "Device.SoftwareModules.ExecEnv.1.Name": "apps",
        "Device.SoftwareModules.ExecEnv.1.Type": "Linux container",
        "Device.SoftwareModules.ExecEnv.1.Vendor": "cpe-sim",
        "Device.SoftwareModules.ExecEnv.1.Version": "1.0",
        "Device.SoftwareModules.ExecEnv.1.AllocatedDiskSpace": "65536",
        "Device.SoftwareModules.ExecEnv.1.AvailableDiskSpace": "65536",
        "Device.SoftwareModules.ExecEnv.1.AllocatedMemory": "32768",
        "Device.SoftwareModules.ExecEnv.1.AvailableMemory": "32768",
        **{f"Device.Hosts.Host.{n}.IPAddress": f"192.168.1.{100 + n}" for n in range(1, 9)},
        **{
            f"Device.Hosts.Host.{n}.IPv4Address.1.IPAddress": f"192.168.1.{100 + n}"
            for n in range(1, 9)
        },
        **{f"Device.Hosts.Host.{n}.HostName": f"host-{n}" for n in range(1, 9)},
        **{f"Device.Hosts.Host.{n}.DHCPClient": "" for n in range(1, 9)},
        **{
            f"Device.Hosts.Host.{n}.Layer1Interface": (
                f"Device.Ethernet.Interface.{n}." if n <= 3 else f"Device.WiFi.SSID.{1 + n % 2}."
            )
            for n in range(1, 9)
        },
        **{f"Device.Hosts.Host.{n}.Layer3Interface": "Device.IP.Interface.1." for n in range(1, 9)},
    },
    boolean_style=("true", "false"),
)

# ----------------------------------------------------------------------------- TR-098

_I = "InternetGatewayDevice."
_LAN = _I + "LANDevice.1."
_WCD = _I + "WANDevice.1.WANConnectionDevice.1."
TR098 = ModelSpec(
    name="tr098-gateway",
    source="tr-098-1-8-0-full.xml",
    root=_I,
    objects={
        "InternetGatewayDevice.": 1,
        "InternetGatewayDevice.DeviceInfo.": 1,
        "InternetGatewayDevice.DeviceInfo.MemoryStatus.": 1,
        "InternetGatewayDevice.DeviceInfo.ProcessStatus.": 1,
        "InternetGatewayDevice.DeviceInfo.VendorConfigFile.{i}.": 0,
        "InternetGatewayDevice.DeviceConfig.": 1,
        "InternetGatewayDevice.ManagementServer.": 1,
        "InternetGatewayDevice.Time.": 1,
        "InternetGatewayDevice.UserInterface.": 1,
        "InternetGatewayDevice.Layer3Forwarding.": 1,
        "InternetGatewayDevice.Layer3Forwarding.Forwarding.{i}.": 1,
        "InternetGatewayDevice.LANConfigSecurity.": 1,
        "InternetGatewayDevice.IPPingDiagnostics.": 1,
        "InternetGatewayDevice.TraceRouteDiagnostics.": 1,
        "InternetGatewayDevice.TraceRouteDiagnostics.RouteHops.{i}.": 0,
        "InternetGatewayDevice.DownloadDiagnostics.": 1,
        "InternetGatewayDevice.UploadDiagnostics.": 1,
        "InternetGatewayDevice.LANDevice.{i}.": 1,
        "InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.": 1,
        "InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.IPInterface.{i}.": 1,
        "InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.DHCPStaticAddress.{i}.": 0,
        "InternetGatewayDevice.LANDevice.{i}.LANEthernetInterfaceConfig.{i}.": 4,
        "InternetGatewayDevice.LANDevice.{i}.LANEthernetInterfaceConfig.{i}.Stats.": 1,
        "InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.": 2,
        "InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.AssociatedDevice.{i}.": 0,
        "InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.Stats.": 1,
        "InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.WPS.": 1,
        "InternetGatewayDevice.LANDevice.{i}.Hosts.": 1,
        "InternetGatewayDevice.LANDevice.{i}.Hosts.Host.{i}.": 6,
        "InternetGatewayDevice.WANDevice.{i}.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANCommonInterfaceConfig.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANEthernetInterfaceConfig.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANEthernetInterfaceConfig.Stats.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}"
        ".PortMapping.{i}.": 0,
        "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.Stats.": 1,
        "InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANPPPConnection.{i}.": 0,
        "InternetGatewayDevice.User.{i}.": 1,
    },
    # Every TR-098 ACS expects these two in the Inform.
    keep_deprecated=frozenset({_I + "DeviceSummary", _I + "DeviceInfo.SpecVersion"}),
    identity={
        _I + "DeviceInfo.Manufacturer": "manufacturer",
        _I + "DeviceInfo.ManufacturerOUI": "oui",
        _I + "DeviceInfo.ProductClass": "product_class",
        _I + "DeviceInfo.ModelName": "model_name",
        _I + "DeviceInfo.SerialNumber": "serial_number",
        _I + "DeviceInfo.SoftwareVersion": "software_version",
        _I + "DeviceInfo.HardwareVersion": "hardware_version",
        _I + "DeviceInfo.UpTime": "uptime",
        _I + "Time.CurrentLocalTime": "current_time",
        _I + "ManagementServer.URL": "acs_url",
        _I + "ManagementServer.Username": "acs_username",
        _I + "ManagementServer.Password": "acs_password",
        _I + "ManagementServer.ConnectionRequestURL": "connection_request_url",
        _I + "ManagementServer.ConnectionRequestUsername": "connection_request_username",
        _I + "ManagementServer.ConnectionRequestPassword": "connection_request_password",
        **{_LAN + f"LANEthernetInterfaceConfig.{n}.MACAddress": f"mac:{n}" for n in range(1, 5)},
        **{_LAN + f"WLANConfiguration.{n}.BSSID": f"mac:{5 + n}" for n in range(1, 3)},
        **{_LAN + f"WLANConfiguration.{n}.SSID": f"ssid:{n}" for n in range(1, 3)},
        **{_LAN + f"WLANConfiguration.{n}.KeyPassphrase": "wifi_key" for n in range(1, 3)},
        **{_LAN + f"Hosts.Host.{n}.MACAddress": f"host_mac:{n}" for n in range(1, 7)},
        _WCD + "WANIPConnection.1.ExternalIPAddress": "wan_ip",
        _WCD + "WANIPConnection.1.MACAddress": "mac:5",
        _I + "WANDevice.1.WANEthernetInterfaceConfig.MACAddress": "mac:5",
    },
    extra_forced_inform=(),
    values={
        **_diagnostics_defaults(
            "InternetGatewayDevice.", "IPPingDiagnostics.", "TraceRouteDiagnostics."
        ),
        _I + "DeviceSummary": (
            "InternetGatewayDevice:1.4[](Baseline:1, EthernetLAN:1, WiFiLAN:1, Time:1)"
        ),
        _I + "DeviceInfo.SpecVersion": "1.0",
        _I + "DeviceInfo.Description": "Home gateway (simulated)",
        _I + "DeviceInfo.ProvisioningCode": "",
        _I + "DeviceInfo.FirstUseDate": "2026-01-15T08:00:00Z",
        _I + "DeviceInfo.MemoryStatus.Total": "262144",
        _I + "DeviceInfo.MemoryStatus.Free": "131072",
        _I + "DeviceInfo.ProcessStatus.CPUUsage": "9",
        _I + "ManagementServer.PeriodicInformEnable": "1",
        _I + "ManagementServer.HTTPCompressionSupported": "GZIP,Deflate",
        _I + "ManagementServer.PeriodicInformInterval": "3600",
        _I + "ManagementServer.PeriodicInformTime": UNKNOWN_TIME,
        _I + "ManagementServer.CWMPRetryMinimumWaitInterval": "5",
        _I + "ManagementServer.CWMPRetryIntervalMultiplier": "2000",
        _I + "ManagementServer.DefaultActiveNotificationThrottle": "0",
        _I + "Time.Enable": "1",
        _I + "Time.Status": "Synchronized",
        _I + "Time.NTPServer1": "pool.ntp.org",
        _I + "Time.LocalTimeZoneName": "CET-1CEST,M3.5.0,M10.5.0/3",
        _I + "Layer3Forwarding.DefaultConnectionService": _WCD + "WANIPConnection.1",
        _I + "Layer3Forwarding.Forwarding.1.GatewayIPAddress": "100.64.0.1",
        _I + "Layer3Forwarding.Forwarding.1.Interface": _WCD + "WANIPConnection.1",
        _LAN + "LANHostConfigManagement.DHCPServerEnable": "1",
        _LAN + "LANHostConfigManagement.MinAddress": "192.168.1.100",
        _LAN + "LANHostConfigManagement.MaxAddress": "192.168.1.249",
        _LAN + "LANHostConfigManagement.SubnetMask": "255.255.255.0",
        _LAN + "LANHostConfigManagement.DNSServers": "192.168.1.1",
        _LAN + "LANHostConfigManagement.DomainName": "home.lan",
        _LAN + "LANHostConfigManagement.IPRouters": "192.168.1.1",
        _LAN + "LANHostConfigManagement.DHCPLeaseTime": "86400",
        _LAN + "LANHostConfigManagement.IPInterface.1.IPInterfaceIPAddress": "192.168.1.1",
        _LAN + "LANHostConfigManagement.IPInterface.1.IPInterfaceSubnetMask": "255.255.255.0",
        _LAN + "LANHostConfigManagement.IPInterface.1.IPInterfaceAddressingType": "Static",
        _LAN + "WLANConfiguration.1.Channel": "6",
        _LAN + "WLANConfiguration.1.Standard": "n",
        _LAN + "WLANConfiguration.1.PossibleChannels": "1-13",
        _LAN + "WLANConfiguration.2.Channel": "36",
        _LAN + "WLANConfiguration.2.Standard": "a",
        **{_LAN + f"LANEthernetInterfaceConfig.{n}.Name": f"eth{n - 1}" for n in range(1, 5)},
        **{_LAN + f"WLANConfiguration.{n}.Name": f"wl{n - 1}" for n in range(1, 3)},
        _LAN + "WLANConfiguration.2.PossibleChannels": "36,40,44,48",
        _LAN + "WLANConfiguration.1.BeaconType": "11i",
        _LAN + "WLANConfiguration.2.BeaconType": "11i",
        _LAN + "WLANConfiguration.1.IEEE11iAuthenticationMode": "PSKAuthentication",
        _LAN + "WLANConfiguration.2.IEEE11iAuthenticationMode": "PSKAuthentication",
        _LAN + "WLANConfiguration.1.IEEE11iEncryptionModes": "AESEncryption",
        _LAN + "WLANConfiguration.2.IEEE11iEncryptionModes": "AESEncryption",
        **{_LAN + f"Hosts.Host.{n}.IPAddress": f"192.168.1.{100 + n}" for n in range(1, 7)},
        **{_LAN + f"Hosts.Host.{n}.HostName": f"host-{n}" for n in range(1, 7)},
        **{_LAN + f"Hosts.Host.{n}.AddressSource": "DHCP" for n in range(1, 7)},
        **{_LAN + f"Hosts.Host.{n}.LeaseTimeRemaining": "43200" for n in range(1, 7)},
        _I + "WANDevice.1.WANCommonInterfaceConfig.WANAccessType": "Ethernet",
        _I + "WANDevice.1.WANCommonInterfaceConfig.PhysicalLinkStatus": "Up",
        _I + "WANDevice.1.WANCommonInterfaceConfig.Layer1UpstreamMaxBitRate": "1000000000",
        _I + "WANDevice.1.WANCommonInterfaceConfig.Layer1DownstreamMaxBitRate": "1000000000",
        _I + "WANDevice.1.WANEthernetInterfaceConfig.Status": "Up",
        _I + "WANDevice.1.WANEthernetInterfaceConfig.MaxBitRate": "Auto",
        _WCD + "WANIPConnection.1.Name": "wan",
        _WCD + "WANIPConnection.1.ConnectionStatus": "Connected",
        _WCD + "WANIPConnection.1.ConnectionType": "IP_Routed",
        _WCD + "WANIPConnection.1.AddressingType": "DHCP",
        _WCD + "WANIPConnection.1.SubnetMask": "255.192.0.0",
        _WCD + "WANIPConnection.1.DefaultGateway": "100.64.0.1",
        _WCD + "WANIPConnection.1.DNSServers": "9.9.9.9,1.1.1.1",
        _WCD + "WANIPConnection.1.NATEnabled": "1",
        _I + "User.1.Username": "admin",
        _I + "User.1.RemoteAccessCapable": "1",
    },
    boolean_style=("1", "0"),
)

MODELS = (TR181, TR098)


# ----------------------------------------------------------------------------- XML reading


class _TypeResolver:
    """Resolves a parameter's <syntax> into (xsd type, facets), following dataType refs."""

    def __init__(self, root: etree._Element) -> None:
        self.data_types = {d.get("name"): d for d in root.findall("dataType")}

    def _facets_from(self, elem: etree._Element, facets: dict[str, Any]) -> None:
        enums = [e.get("value") for e in elem.findall("enumeration")]
        if enums:
            facets["enum"] = enums
        ranges = [
            [_int_or_none(r.get("minInclusive")), _int_or_none(r.get("maxInclusive"))]
            for r in elem.findall("range")
        ]
        if ranges:
            facets["ranges"] = ranges
        sizes = [
            [_int_or_none(s.get("minLength")), _int_or_none(s.get("maxLength"))]
            for s in elem.findall("size")
        ]
        if sizes:
            facets["sizes"] = sizes
        ref = elem.find("enumerationRef")
        if ref is not None:
            facets["enum_ref"] = ref.get("targetParam")
            if ref.get("nullValue") is not None:
                facets["enum_null"] = ref.get("nullValue")

    def _data_type(self, name: str, facets: dict[str, Any]) -> str:
        """Base xsd type of a named dataType; facets of the nearest definition win."""
        dt = self.data_types[name]
        own: dict[str, Any] = {}
        self._facets_from(dt, own)
        base_type: str | None = None
        for child in dt:
            if not isinstance(child.tag, str) or child.tag in ("description", "list"):
                continue
            if child.tag in _XSD_TYPES:
                base_type = _XSD_TYPES[child.tag]
                self._facets_from(child, own)
        if base_type is None:
            base = dt.get("base")
            if base is None:
                raise ValueError(f"dataType {name} has no base type")
            base_type = self._data_type(base, facets)
        for key, value in own.items():
            facets[key] = value
        return base_type

    def resolve(self, syntax: etree._Element) -> tuple[str, dict[str, Any]]:
        facets: dict[str, Any] = {}
        xsd_type: str | None = None
        for child in syntax:
            if not isinstance(child.tag, str):
                continue
            if child.tag == "list":
                facets["list"] = True
                list_sizes = [
                    [_int_or_none(s.get("minLength")), _int_or_none(s.get("maxLength"))]
                    for s in child.findall("size")
                ]
                if list_sizes:
                    facets["list_sizes"] = list_sizes
            elif child.tag in _XSD_TYPES:
                xsd_type = _XSD_TYPES[child.tag]
                self._facets_from(child, facets)
            elif child.tag == "dataType":
                ref = child.get("ref") or child.get("base")
                if ref is None:
                    raise ValueError("dataType without ref")
                xsd_type = self._data_type(ref, facets)
                self._facets_from(child, facets)
        if xsd_type is None:
            raise ValueError("syntax without a type")
        if facets.get("list"):
            # A list travels as one comma-separated string on the wire.
            facets["item_type"] = xsd_type
            xsd_type = "xsd:string"
        if syntax.get("hidden") == "true" or syntax.get("secured") == "true":
            facets["hidden"] = True
        if syntax.get("command") == "true":
            facets["command"] = True
        return xsd_type, facets


def _req(elem: etree._Element, attr: str) -> str:
    value = elem.get(attr)
    if value is None:
        raise ValueError(f"<{elem.tag}> without {attr}")
    return str(value)


def _int_or_none(text: str | None) -> int | None:
    return None if text is None else int(text)


@dataclass
class _ParamDef:
    name: str
    xsd_type: str
    writable: bool
    default: str | None  # from the model's <default type="object">
    facets: dict[str, Any]


@dataclass
class _ObjDef:
    pattern: str
    writable: bool  # a table whose instances the ACS may add/delete
    max_entries: int | None
    is_table: bool
    params: list[_ParamDef]


def _read_model(path: Path, keep: frozenset[str]) -> tuple[str, dict[str, _ObjDef]]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.parse(str(path), parser).getroot()
    resolver = _TypeResolver(root)
    model = root.find("model")
    if model is None:
        raise ValueError(f"{path}: no <model>")
    objects: dict[str, _ObjDef] = {}
    for obj in model.findall("object"):
        if obj.get("status") in _RETIRED:
            continue
        pattern = _req(obj, "name")
        max_entries = obj.get("maxEntries")
        is_table = pattern.endswith(".{i}.")
        params: list[_ParamDef] = []
        for p in obj.findall("parameter"):
            name = _req(p, "name")
            if p.get("status") in _RETIRED and pattern + name not in keep:
                continue
            syntax = p.find("syntax")
            if syntax is None:
                raise ValueError(f"{pattern}{name} has no <syntax>")
            xsd_type, facets = resolver.resolve(syntax)
            if p.get("forcedInform") == "true":
                facets["forced_inform"] = True
            notify = p.get("activeNotify")
            if notify and notify != "normal":
                facets["active_notify"] = notify
            default = None
            for d in syntax.findall("default"):
                if d.get("type") == "object":
                    default = d.get("value")
            params.append(
                _ParamDef(
                    name=name,
                    xsd_type=xsd_type,
                    writable=p.get("access") in ("readWrite", "writeOnceReadOnly"),
                    default=default,
                    facets=facets,
                )
            )
        objects[pattern] = _ObjDef(
            pattern=pattern,
            writable=is_table and obj.get("access") == "readWrite",
            max_entries=None if max_entries in (None, "unbounded") else int(max_entries),
            is_table=is_table,
            params=params,
        )
    return _req(model, "name"), objects


# ----------------------------------------------------------------------------- realistic values


def _guess_value(pdef: _ParamDef, spec: ModelSpec, path: str) -> str:
    """A value a real gateway would plausibly report when the model gives no default."""
    if pdef.default is not None:
        return pdef.default
    name = pdef.name
    facets = pdef.facets
    true, false = spec.boolean_style
    t = facets.get("item_type", pdef.xsd_type)
    if facets.get("list"):
        return ""
    if t == "xsd:boolean":
        # Switches stay at the model's off state unless they are the object's main one.
        return true if name == "Enable" or name.endswith("Capable") else false
    if facets.get("enum_null") is not None:
        return str(facets["enum_null"])
    enum = facets.get("enum")
    if enum:
        for preferred in ("Up", "Enabled", "Connected", "Disabled", "None"):
            if preferred in enum and (name.endswith("Status") or preferred != "Up"):
                return preferred
        return enum[0]
    if t in ("xsd:unsignedInt", "xsd:int", "xsd:unsignedLong", "xsd:long", "xsd:decimal"):
        low = _lowest_allowed(facets)
        if name.endswith("MaxBitRate"):
            return "1000"
        return str(low)
    if t == "xsd:dateTime":
        return UNKNOWN_TIME
    fixed = [lo for lo, _hi in facets.get("sizes", []) if lo]
    if t == "xsd:hexBinary" and fixed and len(fixed) == len(facets["sizes"]):
        return "00" * min(fixed)  # all-zero of the required length, e.g. a "no request" code
    segments = path.split(".")
    instance = segments[-2] if len(segments) >= 3 and segments[-2].isdigit() else ""
    if t == "xsd:string" and name == "Alias" and instance:
        return "cpe-" + instance
    if t == "xsd:string" and name == "Name" and instance:
        limit = min((hi for _lo, hi in facets.get("sizes", []) if hi), default=64)
        return (segments[-3].lower()[: limit - len(instance)]) + instance
    return ""


def _lowest_allowed(facets: dict[str, Any]) -> int:
    """0 when the ranges allow it (counters, offsets), else the smallest allowed value."""
    ranges = facets.get("ranges", [])
    if not ranges or any((lo is None or lo <= 0) and (hi is None or hi >= 0) for lo, hi in ranges):
        return 0
    return min(lo for lo, _hi in ranges if lo is not None)


# ----------------------------------------------------------------------------- building


def _check_spec(spec: ModelSpec, objects: dict[str, _ObjDef]) -> None:
    for pattern in spec.objects:
        if pattern not in objects:
            raise SystemExit(f"{spec.name}: object {pattern} not in {spec.source}")
        parent = _parent_pattern(pattern)
        if pattern != spec.root and parent not in spec.objects:
            raise SystemExit(f"{spec.name}: {pattern} included without its parent {parent}")


def _parent_pattern(pattern: str) -> str:
    """'A.B.{i}.C.' -> 'A.B.{i}.'; 'A.B.{i}.' -> 'A.' (the table's container)."""
    trimmed = pattern[:-5] if pattern.endswith(".{i}.") else pattern[:-1]
    return trimmed[: trimmed.rfind(".") + 1]


def _children(spec: ModelSpec, pattern: str) -> list[str]:
    """Direct child object patterns of an included object, in model order."""
    return [p for p in spec.objects if p != pattern and _parent_pattern(p) == pattern]


def _build(spec: ModelSpec, source_dir: Path) -> dict[str, Any]:
    model_name, objects = _read_model(source_dir / spec.source, spec.keep_deprecated)
    _check_spec(spec, objects)
    # Model order for deterministic output.
    order = {pattern: i for i, pattern in enumerate(objects)}
    included = sorted(spec.objects, key=order.__getitem__)
    spec_sorted = ModelSpec(**{**spec.__dict__, "objects": {p: spec.objects[p] for p in included}})

    parameters: list[list[Any]] = []
    object_rows: list[list[Any]] = []
    forced: list[str] = []
    facets_out: dict[str, dict[str, Any]] = {}

    def emit(pattern: str, concrete: str) -> None:
        obj = objects[pattern]
        # An instance row is writable when DeleteObject may remove it.
        object_rows.append([concrete, obj.is_table and obj.writable])
        for p in obj.params:
            path = concrete + p.name
            value = spec.values.get(path)
            if value is None:
                value = _in_service_value(p, spec) or _guess_value(p, spec, path)
            parameters.append([path, p.xsd_type, p.writable, value])
            if p.facets.get("forced_inform"):
                forced.append(path)
        for child in _children(spec_sorted, pattern):
            if child.endswith(".{i}."):
                table = concrete + child[len(pattern) : -4]
                object_rows.append([table, objects[child].writable])
                for n in range(1, spec.objects[child] + 1):
                    emit(child, f"{table}{n}.")
            else:
                emit(child, concrete + child[len(pattern) :])

    emit(spec.root, spec.root)

    multi_instance: dict[str, Any] = {}
    for pattern in included:
        obj = objects[pattern]
        for p in obj.params:
            if p.facets:
                facets_out[pattern + p.name] = {
                    k: v for k, v in sorted(p.facets.items()) if k != "forced_inform"
                }
        if not obj.is_table:
            continue
        rel_objects: list[list[Any]] = []
        rel_params: list[list[Any]] = []
        _emit_relative(spec_sorted, objects, pattern, "", rel_objects, rel_params)
        multi_instance[pattern] = {
            "writable": obj.writable,
            "max_entries": obj.max_entries,
            "objects": rel_objects,
            "parameters": rel_params,
        }
    facets_out = {k: v for k, v in facets_out.items() if v}

    forced.extend(p for p in spec.extra_forced_inform if p not in forced)
    known = {row[0] for row in parameters}
    missing = [p for p in [*spec.identity, *spec.values, *forced] if p not in known]
    if missing:
        raise SystemExit(f"{spec.name}: not parameters of the template: {missing}")
    return {
        "model": spec.name,
        "root": spec.root,
        "data_model": model_name,
        "source": spec.source,
        "parameters": parameters,
        "objects": object_rows,
        "multi_instance": multi_instance,
        "facets": facets_out,
        "identity": dict(sorted(spec.identity.items())),
        "forced_inform": forced,
    }


def _in_service_value(p: _ParamDef, spec: ModelSpec) -> str | None:
    """An object a gateway ships with is in service, whatever the model's default says."""
    if p.name == "Enable" and p.xsd_type == "xsd:boolean":
        return spec.boolean_style[0]
    if p.name == "Status" and "Up" in p.facets.get("enum", ()):
        return "Up"
    return None


def _emit_relative(
    spec: ModelSpec,
    objects: dict[str, _ObjDef],
    sub: str,
    rel: str,
    rel_objects: list[list[Any]],
    rel_params: list[list[Any]],
) -> None:
    """Parameters and sub-objects of a table row, named relative to the row."""
    for p in objects[sub].params:
        rel_params.append([rel + p.name, p.xsd_type, p.writable, _generic_default(p, spec)])
    for child in _children(spec, sub):
        child_rel = rel + child[len(sub) :]
        if child.endswith(".{i}."):
            rel_objects.append([child_rel[:-4], objects[child].writable])
        else:
            rel_objects.append([child_rel, False])
            _emit_relative(spec, objects, child, child_rel, rel_objects, rel_params)


def _generic_default(p: _ParamDef, spec: ModelSpec) -> str:
    """Default for an instance the ACS creates: model default or a neutral value."""
    if p.name == "Alias":
        return ""  # the tree assigns "cpe-<n>" at AddObject time
    if p.name == "Enable" and p.default is None:
        return spec.boolean_style[1]  # new rows start disabled until configured
    return _guess_value(p, spec, "")


def render(template: dict[str, Any]) -> str:
    """Deterministic JSON text: one row per line keeps diffs readable."""
    lines = ["{"]
    keys = list(template)
    for i, key in enumerate(keys):
        value = template[key]
        comma = "," if i < len(keys) - 1 else ""
        if isinstance(value, list) and value and isinstance(value[0], list):
            rows = ",\n".join("    " + json.dumps(row, ensure_ascii=False) for row in value)
            lines.append(f"  {json.dumps(key)}: [\n{rows}\n  ]{comma}")
        elif isinstance(value, dict) and value:
            items = ",\n".join(
                f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False, sort_keys=True)}"
                for k, v in value.items()
            )
            lines.append(f"  {json.dumps(key)}: {{\n{items}\n  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(source_dir: Path) -> dict[str, str]:
    """File name -> JSON text for every template."""
    return {f"{spec.name}.json": render(_build(spec, source_dir)) for spec in MODELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the XML")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the JSON")
    args = parser.parse_args(argv)
    for name, text in generate(args.source).items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
