#!/usr/bin/env python3
"""An independent weft session client (PROTOCOL.md §3-§5), written from the spec alone.

It performs a kind-2 (XX) or kind-1 (IK) handshake against a weft node over UDP, then sends an
encrypted PING on the default channel and expects the encrypted PONG. Exit status 0 on success.

Needs: pip install noiseprotocol cryptography pynacl

    noise_client.py --port P --mode xx|ik --peer-id HEX [--x25519 HEX]

`--peer-id` is the node's peer id (checked against the key the handshake proves); `--x25519` is
the node's static key from its peer record (IK only).
"""

import argparse
import os
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization
from nacl.signing import SigningKey, VerifyKey
from noise.connection import Keypair, NoiseConnection

# ---------------------------------------------------------------- BLAKE3 (one chunk, ≤ 1024 B)
# Python's hashlib has no BLAKE3; every input this client hashes fits one chunk.

IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
CHUNK_START, CHUNK_END, ROOT = 1, 2, 8
KEYED_HASH, DERIVE_KEY_CONTEXT, DERIVE_KEY_MATERIAL = 16, 32, 64
M32 = 0xFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M32


def _g(s, a, b, c, d, x, y):
    s[a] = (s[a] + s[b] + x) & M32
    s[d] = _rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & M32
    s[d] = _rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M32
    s[b] = _rotr(s[b] ^ s[c], 7)


def _compress(cv, block, block_len, flags):
    m = list(struct.unpack("<16I", block))
    s = list(cv) + IV[:4] + [0, 0, block_len, flags]
    for r in range(7):
        _g(s, 0, 4, 8, 12, m[0], m[1])
        _g(s, 1, 5, 9, 13, m[2], m[3])
        _g(s, 2, 6, 10, 14, m[4], m[5])
        _g(s, 3, 7, 11, 15, m[6], m[7])
        _g(s, 0, 5, 10, 15, m[8], m[9])
        _g(s, 1, 6, 11, 12, m[10], m[11])
        _g(s, 2, 7, 8, 13, m[12], m[13])
        _g(s, 3, 4, 9, 14, m[14], m[15])
        if r < 6:
            m = [m[i] for i in PERMUTATION]
    return [s[i] ^ s[i + 8] for i in range(8)]


def _hash(data, key_words, base_flags):
    assert len(data) <= 1024, "this BLAKE3 handles one chunk"
    blocks = [data[i:i + 64] for i in range(0, len(data), 64)] or [b""]
    cv = key_words
    for i, block in enumerate(blocks):
        flags = base_flags
        if i == 0:
            flags |= CHUNK_START
        if i == len(blocks) - 1:
            flags |= CHUNK_END | ROOT
        cv = _compress(cv, block.ljust(64, b"\0"), len(block), flags)
    return struct.pack("<8I", *cv)


def blake3(data):
    return _hash(data, IV, 0)


def blake3_keyed(key, data):
    return _hash(data, list(struct.unpack("<8I", key)), KEYED_HASH)


def blake3_derive_key(context, material):
    context_key = _hash(context.encode(), IV, DERIVE_KEY_CONTEXT)
    return _hash(material, list(struct.unpack("<8I", context_key)), DERIVE_KEY_MATERIAL)


# ---------------------------------------------------------------- wire (PROTOCOL.md §3, §4)

VERSION = 1
ENCRYPTED, SEQUENCED, KEY_PHASE = 0x1, 0x2, 0x4
T_START_ENCRYPTION, T_INIT, T_RESPONSE, T_COOKIE, T_FINAL = 0x01, 0x02, 0x03, 0x04, 0x05
T_PMTU_PROBE, T_PING, T_PONG = 0x15, 0x14, 0x17
ZERO_ID = bytes(16)


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf, at):
    value, shift = 0, 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def header(flags, sender, recipient, channel=0, sequence=None):
    if sequence is not None:
        flags |= SEQUENCED
    out = bytes([(VERSION << 4) | flags]) + sender + recipient + struct.pack(">I", channel)
    if sequence is not None:
        out += struct.pack(">I", sequence)
    return out


def parse_header(packet):
    flags = packet[0] & 0x0F
    sender, recipient = packet[1:17], packet[17:33]
    channel = struct.unpack(">I", packet[33:37])[0]
    if flags & SEQUENCED:
        return flags, sender, recipient, channel, struct.unpack(">I", packet[37:41])[0], 41
    return flags, sender, recipient, channel, None, 37


def var_message(kind, body):
    return bytes([kind]) + varint(len(body)) + body


def channel_key(direction_secret, channel):
    # PROTOCOL.md §5: derive_key("weft v1 channel key", direction secret ‖ channel id BE).
    return blake3_derive_key("weft v1 channel key", direction_secret + struct.pack(">I", channel))


def nonce(sequence):
    return bytes(4) + struct.pack(">Q", sequence)


# ---------------------------------------------------------------- identity (PROTOCOL.md §2, §5)

class Identity:
    def __init__(self):
        self.signing = SigningKey.generate()
        self.ed25519 = bytes(self.signing.verify_key)
        self.x25519_private = X25519PrivateKey.generate()
        self.x25519_secret = self.x25519_private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        self.x25519 = self.x25519_private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.peer_id = blake3(self.ed25519)[:16]
        signature = self.signing.sign(b"weft v1 static key" + self.x25519).signature
        self.binding = self.ed25519 + signature


def check_binding(binding, remote_static, claimed_peer_id):
    if len(binding) != 96:
        raise SystemExit("binding payload has the wrong length")
    ed25519, signature = binding[:32], binding[32:]
    if blake3(ed25519)[:16] != claimed_peer_id:
        raise SystemExit("the node's key does not hash to its peer id")
    VerifyKey(ed25519).verify(b"weft v1 static key" + remote_static, signature)


def tai64n():
    now = time.time_ns()
    return struct.pack(">QI", (1 << 62) + 10 + now // 1_000_000_000, now % 1_000_000_000)


# ---------------------------------------------------------------- the client

class Client:
    def __init__(self, port, node_peer_id):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)
        self.node = ("127.0.0.1", port)
        self.node_peer_id = node_peer_id
        self.me = Identity()
        self.index = struct.unpack(">I", os.urandom(4))[0]

    def send(self, packet):
        self.sock.sendto(packet, self.node)

    def receive(self):
        packet, _ = self.sock.recvfrom(2048)
        return packet

    def init_packet(self, kind, recipient, handshake, mac1_key, cookie):
        body_before_mac = bytes([kind]) + struct.pack(">I", self.index) + varint(len(handshake)) \
            + handshake
        tail = (bytes([16]) + cookie) if cookie else bytes([0])
        body_len = len(body_before_mac) + 16 + len(tail)
        prefix = header(0, self.me.peer_id, recipient) + bytes([T_INIT]) + varint(body_len) \
            + body_before_mac
        # PROTOCOL.md §5: mac1 over packet[0 .. mac1]; all zero for kind 2.
        mac1 = blake3_keyed(mac1_key, prefix)[:16] if mac1_key else bytes(16)
        packet = prefix + mac1 + tail
        body = packet[len(packet) - body_len:]
        return packet, blake3(body)[:16]

    def exchange_init(self, kind, recipient, handshake, mac1_key):
        """Sends the INIT, answering a HANDSHAKE_COOKIE once; returns the answer packet."""
        cookie = None
        for _ in range(3):
            packet, echo = self.init_packet(kind, recipient, handshake, mac1_key, cookie)
            self.send(packet)
            answer = self.receive()
            _, _, _, _, _, at = parse_header(answer)
            if answer[at] == T_COOKIE:
                receiver, cookie, echoed = struct.unpack(">I16s16s", answer[at + 1:at + 37])
                # PROTOCOL.md §5: accept a cookie only if it names our index and echoes our INIT.
                if receiver != self.index or echoed != echo:
                    raise SystemExit("cookie does not answer our INIT")
                continue
            return answer
        raise SystemExit("no handshake response")

    def ping(self, send_secret, receive_secret, sequence):
        token = os.urandom(8)
        head = header(ENCRYPTED, self.me.peer_id, self.node_peer_id, 0, sequence)
        sealed = AESGCM(channel_key(send_secret, 0)).encrypt(
            nonce(sequence), bytes([T_PING]) + token, head)
        self.send(head + sealed)
        self.expect_pong(receive_secret, token)

    def expect_pong(self, receive_secret, token):
        for _ in range(8):
            packet = self.receive()
            flags, sender, _, channel, sequence, at = parse_header(packet)
            if not flags & ENCRYPTED or channel != 0 or sender != self.node_peer_id:
                continue
            plain = AESGCM(channel_key(receive_secret, 0)).decrypt(
                nonce(sequence), packet[at:], packet[:at])
            if plain[0] == T_PONG and plain[1:9] == token:
                return
        raise SystemExit("no PONG")

    def xx(self):
        noise = NoiseConnection.from_name(b"Noise_XX_25519_AESGCM_BLAKE2s")
        noise.set_as_initiator()
        noise.set_prologue(b"weft v1")
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self.me.x25519_secret)
        noise.start_handshake()
        message1 = bytes(noise.write_message(b""))
        answer = self.exchange_init(2, ZERO_ID, message1, None)
        _, sender, _, _, _, at = parse_header(answer)
        if answer[at] != T_RESPONSE:
            raise SystemExit("expected HANDSHAKE_RESPONSE")
        length, body_at = read_varint(answer, at + 1)
        body = answer[body_at:body_at + length]
        node_index, receiver = struct.unpack(">II", body[:8])
        if receiver != self.index or sender != self.node_peer_id:
            raise SystemExit("response names another handshake or peer")
        payload = bytes(noise.read_message(body[8:]))
        remote_static = noise.noise_protocol.handshake_state.rs.public_bytes
        check_binding(payload, remote_static, sender)
        message3 = bytes(noise.write_message(self.me.binding))
        i2r = noise.noise_protocol.cipher_state_encrypt.k
        r2i = noise.noise_protocol.cipher_state_decrypt.k
        # PROTOCOL.md §5: FINAL, then START_ENCRYPTION; the packet is SEQUENCED with the next
        # default-channel number under the new keys (0), its AAD every byte before the
        # ciphertext. The first PING rides in it.
        token = os.urandom(8)
        final = var_message(T_FINAL, struct.pack(">II", self.index, node_index) + message3)
        before = header(0, self.me.peer_id, self.node_peer_id, 0, 0) + final \
            + bytes([T_START_ENCRYPTION])
        sealed = AESGCM(channel_key(i2r, 0)).encrypt(nonce(0), bytes([T_PING]) + token, before)
        self.send(before + sealed)
        self.expect_pong(r2i, token)
        # A second PING as an ordinary ENCRYPTED packet, sequence 1.
        self.ping(i2r, r2i, 1)

    def ik(self, node_x25519):
        noise = NoiseConnection.from_name(b"Noise_IK_25519_AESGCM_BLAKE2s")
        noise.set_as_initiator()
        noise.set_prologue(b"weft v1")
        noise.set_keypair_from_private_bytes(Keypair.STATIC, self.me.x25519_secret)
        noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, node_x25519)
        noise.start_handshake()
        message1 = bytes(noise.write_message(self.me.binding + tai64n()))
        mac1_key = blake3_derive_key("weft v1 mac1", node_x25519)
        answer = self.exchange_init(1, self.node_peer_id, message1, mac1_key)
        flags, sender, _, _, sequence, at = parse_header(answer)
        if answer[at] != T_RESPONSE or sender != self.node_peer_id:
            raise SystemExit("expected HANDSHAKE_RESPONSE from the node")
        length, body_at = read_varint(answer, at + 1)
        body = answer[body_at:body_at + length]
        _, receiver = struct.unpack(">II", body[:8])
        if receiver != self.index:
            raise SystemExit("response names another handshake")
        if bytes(noise.read_message(body[8:])) != b"":
            raise SystemExit("IK response payload must be empty")
        i2r = noise.noise_protocol.cipher_state_encrypt.k
        r2i = noise.noise_protocol.cipher_state_decrypt.k
        start = body_at + length
        if answer[start] != T_START_ENCRYPTION:
            raise SystemExit("START_ENCRYPTION must follow the IK response")
        plain = AESGCM(channel_key(r2i, 0)).decrypt(
            nonce(sequence), answer[start + 1:], answer[:start + 1])
        if not plain:
            raise SystemExit("empty START_ENCRYPTION payload")
        self.ping(i2r, r2i, 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["xx", "ik"], required=True)
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--x25519")
    args = parser.parse_args()
    client = Client(args.port, bytes.fromhex(args.peer_id))
    if args.mode == "xx":
        client.xx()
    else:
        client.ik(bytes.fromhex(args.x25519))
    print(f"{args.mode}: encrypted PING/PONG ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
