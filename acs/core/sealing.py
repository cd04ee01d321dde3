"""Secrets at rest: sealed with AES-SIV (RFC 5297, ``cryptography``) under this
installation's key (pure CPU, no I/O; the key is loaded by acs.services.sealing_key).

AES-SIV is deterministic: the same value sealed for the same place gives the
same text. That is what the tree needs: a periodic read that confirms a
stored secret must not rewrite the tree, and the store's merge tells "the
same" by comparing stored text. Each value is bound to where it lives (a
device id and a parameter path, say) as associated data, so a sealed value
copied to another device or parameter does not open.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from acs.core.secrets import MASK, SEALED_PREFIX, is_secret_name, is_secret_parameter
from acs.cwmp import messages as m

#: where a task's arguments are sealed: bulk jobs share them between devices
TASK_ARGS = "task-args"


class SealError(ValueError):
    """A sealed value that does not open: another key, another place, or damaged."""


class MaskGiven(ValueError):
    """A job would set a secret to the mask: a value read back masked and sent
    again, which would set the device's password to eight asterisks."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"{MASK} is the mask of a secret, not a value: send the value")
        self.paths = paths


class Sealer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the sealing secret has at least 16 bytes")
        # AES-256-SIV takes a 512-bit key; HKDF lets the operator's secret be any string
        key = HKDF(
            algorithm=hashes.SHA256(), length=64, salt=None, info=b"acs sealed values v1"
        ).derive(secret)
        self._siv = AESSIV(key)

    def seal(self, value: str, *where: str) -> str:
        token = self._siv.encrypt(value.encode(), [w.encode() for w in where] or None)
        return SEALED_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")

    def open(self, sealed: str, *where: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise SealError("not a sealed value")
        body = sealed[len(SEALED_PREFIX) :]
        try:
            token = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._siv.decrypt(token, [w.encode() for w in where] or None).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError("the sealed value does not open with this installation's key") from exc

    # ------------------------------------------------------------ tree values

    def seal_values(
        self, device_id: str, values: list[m.ParameterValueStruct]
    ) -> list[m.ParameterValueStruct]:
        """Values about to be stored in ``device_id``'s tree, each secret one
        sealed for its place (the store keeps it as "x", the mask as "v")."""
        if not any(v.value and is_secret_parameter(v.name, v.xsd_type) for v in values):
            return values  # the usual case: nothing to seal, nothing copied
        return [
            m.ParameterValueStruct(v.name, self.seal(v.value, device_id, v.name), v.xsd_type)
            if v.value
            and is_secret_parameter(v.name, v.xsd_type)
            and not v.value.startswith(SEALED_PREFIX)
            else v
            for v in values
        ]

    def open_value(self, device_id: str, path: str, sealed: str | None) -> str | None:
        """A tree value sealed by seal_values; None when absent or it does not open."""
        if not sealed:
            return None
        try:
            return self.open(sealed, device_id, path)
        except SealError:
            return None

    # ------------------------------------------------------------ task arguments

    def seal_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """A job's arguments as stored: the values of secret parameters
        ([[path, value, type?]]) and secret fields (a download's password) sealed.
        MaskGiven when one of them is the mask."""
        masked: list[str] = []

        def seal(value: Any) -> Any:
            if value == MASK:
                masked.append(str(value))
            return value if _already(value) else self.seal(_text(value), TASK_ARGS)

        sealed = _walk(args, seal)
        if masked:
            raise MaskGiven(_mask_paths(args))
        return sealed

    def open_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """What seal_args sealed, opened again, to build the RPC sent to the CPE."""
        return _walk(args, lambda v: self.open(v, TASK_ARGS) if _already(v) else v)


def _mask_paths(args: dict[str, Any]) -> list[str]:
    """Where a job's arguments give a secret the mask, as error paths."""
    paths = []
    for key, value in args.items():
        if is_secret_name(key) and value == MASK:
            paths.append(key)
        elif isinstance(value, list):
            paths.extend(
                f"{key}.{i}"
                for i, item in enumerate(value)
                if isinstance(item, list | tuple)
                and len(item) >= 2
                and isinstance(item[0], str)
                and is_secret_name(item[0])
                and item[1] == MASK
            )
    return paths or ["args"]


def _already(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _text(value: Any) -> str:
    # a boolean set on a secret is sent as the CPE expects it (see acs.core.tasks)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _walk(data: Any, change: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: change(v)
            if isinstance(k, str)
            and is_secret_name(k)
            and isinstance(v, str | int | float)
            and v != ""
            else _walk(v, change)
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        items = [_walk(v, change) for v in data]
        if (
            len(items) >= 2
            and isinstance(data[0], str)
            and is_secret_name(data[0])
            and isinstance(data[1], str | int | float)
            and data[1] != ""
        ):
            items[1] = change(data[1])
        return items
    return data
