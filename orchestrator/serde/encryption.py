"""AES-256-GCM payload encryption with key ids, so keys can rotate.

Each payload is packed whole (its metadata too, so even the encoding is hidden) and
sealed with a fresh 96-bit random nonce. The result carries the key id in its
metadata: rotating means adding a new key and making it the active one, while old
keys stay in the key ring to read older history. The key id is bound into the
authenticated data, so relabelling a payload with another key id fails to decrypt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orchestrator.converter import ENCODING_KEY, Payload
from orchestrator.serde.codecs import pack_payload, unpack_payload
from orchestrator.serde.errors import PayloadCodecError, PayloadKeyError

ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_KEY = "encryption-key-id"
CIPHER_KEY = "encryption-cipher"
CIPHER = b"AES-256-GCM"
_NONCE_BYTES = 12
_AAD_PREFIX = b"saga.payload.v1/"


class AesGcmCodec:
    """Encrypts payloads with the active key; decrypts with whichever key id they name.

    ``keys`` maps key ids to 32-byte keys. Unencrypted payloads pass through decode
    unchanged, so encryption can be turned on for a running system.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise PayloadCodecError(f"active key id {active_key_id!r} is not in the key ring")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if len(key) != 32:
                raise PayloadCodecError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
            self._ciphers[key_id] = AESGCM(key)
        self.active_key_id = active_key_id

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload with the active key."""
        key_id = self.active_key_id
        cipher = self._ciphers[key_id]
        aad = _AAD_PREFIX + key_id.encode()
        metadata = {
            ENCODING_KEY: ENCRYPTED_ENCODING,
            KEY_ID_KEY: key_id.encode(),
            CIPHER_KEY: CIPHER,
        }
        out = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, pack_payload(payload), aad)
            out.append(Payload(dict(metadata), nonce + sealed))
        return out

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt the encrypted payloads; :class:`PayloadKeyError` if a key is unknown or wrong."""
        return [
            self._open(p) if p.metadata.get(ENCODING_KEY) == ENCRYPTED_ENCODING else p
            for p in payloads
        ]

    def _open(self, payload: Payload) -> Payload:
        cipher_name = payload.metadata.get(CIPHER_KEY, CIPHER)
        if cipher_name != CIPHER:
            raise PayloadCodecError(f"unsupported cipher {cipher_name!r}")
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers))
            raise PayloadKeyError(
                f"payload was encrypted with key {key_id!r}, not in the key ring ({known})"
            )
        if len(payload.data) < _NONCE_BYTES + 16:
            raise PayloadCodecError(f"encrypted payload is too short ({len(payload.data)} bytes)")
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _AAD_PREFIX + key_id.encode())
        except InvalidTag:
            raise PayloadKeyError(
                f"payload does not decrypt with key {key_id!r}: wrong key material for that id, "
                "or the data was altered"
            ) from None
        return unpack_payload(plain)
