"""Payload codecs: AES-256-GCM with rotating key ids, compression, and chaining."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from serde_strategies import payloads

from orchestrator.converter import DataConverter, JsonPayloadConverter, Payload
from orchestrator.serde import PayloadCodecError, PayloadKeyError
from orchestrator.serde.codecs import CodecChain, ZlibCodec, pack_payload, unpack_payload
from orchestrator.serde.encryption import KEY_ID_KEY, AesGcmCodec

KEY_1 = os.urandom(32)
KEY_2 = os.urandom(32)
SECRET = JsonPayloadConverter().encode({"card": "4111-1111-1111-1111", "cvv": "123"})


def test_encrypted_bytes_do_not_contain_the_plaintext_and_decode_back() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, active_key_id="k1")
    [sealed] = codec.encode([SECRET])
    assert b"4111-1111-1111-1111" not in sealed.data
    assert b"json/plain" not in sealed.data  # the encoding is hidden too
    assert sealed.metadata[KEY_ID_KEY] == b"k1"
    assert codec.decode([sealed]) == [SECRET]


def test_the_same_payload_encrypts_differently_each_time() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, active_key_id="k1")
    assert codec.encode([SECRET])[0].data != codec.encode([SECRET])[0].data


def test_rotation_reads_old_payloads_and_writes_with_the_new_key() -> None:
    old = AesGcmCodec({"k1": KEY_1}, active_key_id="k1")
    rotated = AesGcmCodec({"k1": KEY_1, "k2": KEY_2}, active_key_id="k2")
    [before] = old.encode([SECRET])
    [after] = rotated.encode([SECRET])
    assert after.metadata[KEY_ID_KEY] == b"k2"
    assert rotated.decode([before, after]) == [SECRET, SECRET]


def test_an_unknown_key_id_is_a_clear_error() -> None:
    [sealed] = AesGcmCodec({"k2": KEY_2}, active_key_id="k2").encode([SECRET])
    with pytest.raises(PayloadKeyError, match=r"key 'k2', not in the key ring \(k1\)"):
        AesGcmCodec({"k1": KEY_1}, active_key_id="k1").decode([sealed])


def test_the_wrong_key_under_the_right_id_is_a_clear_error() -> None:
    [sealed] = AesGcmCodec({"k1": KEY_1}, active_key_id="k1").encode([SECRET])
    with pytest.raises(PayloadKeyError, match="does not decrypt with key 'k1'"):
        AesGcmCodec({"k1": KEY_2}, active_key_id="k1").decode([sealed])


def test_relabelling_the_key_id_fails_authentication() -> None:
    codec = AesGcmCodec({"k1": KEY_1, "k2": KEY_1}, active_key_id="k1")
    [sealed] = codec.encode([SECRET])
    relabelled = Payload({**sealed.metadata, KEY_ID_KEY: b"k2"}, sealed.data)
    with pytest.raises(PayloadKeyError):
        codec.decode([relabelled])


def test_tampered_or_short_ciphertext_is_rejected() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, active_key_id="k1")
    [sealed] = codec.encode([SECRET])
    flipped = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadKeyError):
        codec.decode([Payload(sealed.metadata, flipped)])
    with pytest.raises(PayloadCodecError, match="too short"):
        codec.decode([Payload(sealed.metadata, b"abc")])


def test_unencrypted_payloads_pass_through_decode() -> None:
    codec = AesGcmCodec({"k1": KEY_1}, active_key_id="k1")
    assert codec.decode([SECRET]) == [SECRET]


def test_bad_key_rings_are_refused() -> None:
    with pytest.raises(PayloadCodecError, match="AES-256 needs 32"):
        AesGcmCodec({"k1": b"short"}, active_key_id="k1")
    with pytest.raises(PayloadCodecError, match="not in the key ring"):
        AesGcmCodec({"k1": KEY_1}, active_key_id="k9")


@given(payload=payloads)
def test_pack_and_unpack_are_inverse(payload: Payload) -> None:
    assert unpack_payload(pack_payload(payload)) == payload


def test_unpack_rejects_garbage() -> None:
    with pytest.raises(PayloadCodecError):
        unpack_payload(b"\x02")


def test_zlib_compresses_large_payloads_only() -> None:
    codec = ZlibCodec(min_size=64)
    big = Payload({"encoding": b"json/plain"}, b'"' + b"a" * 1000 + b'"')
    small = Payload({"encoding": b"json/plain"}, b"1")
    packed_big, packed_small = codec.encode([big, small])
    assert len(packed_big.data) < 100
    assert packed_small is small
    assert codec.decode([packed_big, packed_small]) == [big, small]


@given(payload=payloads)
def test_a_chain_compresses_then_encrypts_and_undoes_both(payload: Payload) -> None:
    chain = CodecChain([ZlibCodec(min_size=0), AesGcmCodec({"k1": KEY_1}, active_key_id="k1")])
    encoded = chain.encode([payload])
    assert encoded[0].metadata["encoding"] == b"binary/encrypted"
    assert chain.decode(encoded) == [payload]


def test_a_chain_plugs_into_the_data_converter() -> None:
    converter = DataConverter(codec=CodecChain([AesGcmCodec({"k1": KEY_1}, active_key_id="k1")]))
    [payload] = converter.to_payloads([{"amount": 100}])
    assert b"amount" not in payload.data
    assert converter.from_payloads([payload], [dict]) == [{"amount": 100}]
