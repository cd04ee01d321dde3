"""Connection requests: how the ACS asks a CPE to open a session now.

HTTP (TR-069 3.2.2) lives in :mod:`acs.connreq.http`; UDP (TR-111 Part 2,
TR-069 Annex G) in :mod:`acs.connreq.udp` (codec) and :mod:`acs.connreq.udp_sender`,
with the STUN server CPEs keep their NAT binding open with in
:mod:`acs.connreq.stun_server` (codec :mod:`acs.connreq.stun`); all give the same
result type. XMPP (Annex K) would sit beside them.
"""

from acs.connreq.http import ConnectionRequester, ConnectionRequestResult

__all__ = ["ConnectionRequestResult", "ConnectionRequester"]
