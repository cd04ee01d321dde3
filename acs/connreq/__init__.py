"""Connection requests: how the ACS asks a CPE to open a session now.

HTTP (TR-069 3.2.2) lives in :mod:`acs.connreq.http`; UDP/STUN (Annex G) and
XMPP (Annex K) would sit beside it with the same result type.
"""

from acs.connreq.http import ConnectionRequester, ConnectionRequestResult

__all__ = ["ConnectionRequestResult", "ConnectionRequester"]
