"""Informs shaped like real CPEs' (CWMP 1.0 TR-098, CWMP 1.4 TR-181)."""

INFORM_1_0 = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:cwmp="urn:dslforum-org:cwmp-1-0">
<SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand="1">4711</cwmp:ID></SOAP-ENV:Header>
<SOAP-ENV:Body><cwmp:Inform>
<DeviceId><Manufacturer>Huawei Technologies Co., Ltd</Manufacturer><OUI>00259E</OUI>
<ProductClass>HG8245H</ProductClass><SerialNumber>{serial}</SerialNumber></DeviceId>
<Event SOAP-ENC:arrayType="cwmp:EventStruct[2]">
<EventStruct><EventCode>1 BOOT</EventCode><CommandKey></CommandKey></EventStruct>
<EventStruct><EventCode>2 PERIODIC</EventCode><CommandKey></CommandKey></EventStruct></Event>
<MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2026-11-26T10:00:00+01:00</CurrentTime><RetryCount>0</RetryCount>
<ParameterList SOAP-ENC:arrayType="cwmp:ParameterValueStruct[5]">
<ParameterValueStruct><Name>InternetGatewayDevice.DeviceInfo.HardwareVersion</Name><Value xsi:type="xsd:string">10C7.A</Value></ParameterValueStruct>
<ParameterValueStruct><Name>InternetGatewayDevice.DeviceInfo.SoftwareVersion</Name><Value xsi:type="xsd:string">V3R017C10S115</Value></ParameterValueStruct>
<ParameterValueStruct><Name>InternetGatewayDevice.DeviceInfo.ProvisioningCode</Name><Value xsi:type="xsd:string">ISP1</Value></ParameterValueStruct>
<ParameterValueStruct><Name>InternetGatewayDevice.ManagementServer.ConnectionRequestURL</Name><Value xsi:type="xsd:string">http://10.0.0.7:7547/cr</Value></ParameterValueStruct>
<ParameterValueStruct><Name>InternetGatewayDevice.ManagementServer.PeriodicInformInterval</Name><Value xsi:type="xsd:unsignedInt">3600</Value></ParameterValueStruct>
</ParameterList></cwmp:Inform></SOAP-ENV:Body></SOAP-ENV:Envelope>"""

INFORM_1_4 = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:c="urn:dslforum-org:cwmp-1-2">
<soapenv:Header><c:ID soapenv:mustUnderstand="1">a-1</c:ID>
<c:SupportedCWMPVersions>1.0,1.1,1.2,1.3,1.4</c:SupportedCWMPVersions></soapenv:Header>
<soapenv:Body><c:Inform>
<DeviceId><Manufacturer>Acme</Manufacturer><OUI>ACDE48</OUI><ProductClass>5G-CPE</ProductClass>
<SerialNumber>{serial}</SerialNumber></DeviceId>
<Event soapenc:arrayType="c:EventStruct[1]"><EventStruct><EventCode>2 PERIODIC</EventCode><CommandKey/></EventStruct></Event>
<MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2026-11-26T09:00:00Z</CurrentTime><RetryCount>2</RetryCount>
<ParameterList soapenc:arrayType="c:ParameterValueStruct[3]">
<ParameterValueStruct><Name>Device.DeviceInfo.SoftwareVersion</Name><Value i:type="xs:string">2.4.1-rc2</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.DeviceInfo.HardwareVersion</Name><Value i:type="xs:string">B</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformEnable</Name><Value i:type="xs:boolean">1</Value></ParameterValueStruct>
</ParameterList></c:Inform></soapenv:Body></soapenv:Envelope>"""
