"""A P2P peer in Python for the end-to-end tests: the version-2 handshake of docs/PROTOCOL.md §7
(`HELLO 2 <name> Noise_XXpsk3_25519_ChaChaPoly_SHA256`, then Noise XXpsk3 and sealed records),
written from the Noise spec on python3-cryptography, independently of the C code, so that a
test can play a genuine peer, a fake one with the right PSK and another identity key, or a
peer that sends altered records.

- `psk_for(secret, initiator, responder)`, `prologue_for(initiator, responder)`
- `Noise(initiator, static, psk, prologue)`: `.write_handshake()`, `.read_handshake(msg)`,
  `.seal(pt)`, `.open(ct)`, `.remote_static`, `.done`
- `static_for(name)`: the identity key a real client of `name` uses in these tests (the
  default of `static`); `new_static()` another one
- `NoisePeer.connect(port, me, peer, secret, static=None)`: the initiator side, handshake done
  and `OK <peer>` read (raises `Refused` with what came instead); `.send_frame(b"MSG hi")`,
  `.recv_frame()`, `.send_raw(bytes)`, `.close()`
- `NoisePeer.accept(sock, me, peer, secret, static=None)`: the responder side on an accepted
  socket (reads the HELLO line itself)
"""

import hashlib
import hmac
import os
import socket
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization

PROTOCOL = b"Noise_XXpsk3_25519_ChaChaPoly_SHA256"
HELLO_VERSION = "2"
TIMEOUT = 5.0


class Refused(Exception):
    """The other side refused or closed during the handshake; `.data` is what it sent."""

    def __init__(self, data):
        super().__init__(repr(data))
        self.data = data


def psk_for(secret, initiator, responder):
    info = f"parley-p2p-psk-2\n{initiator}\n{responder}".encode()
    return hashlib.blake2b(info, digest_size=32, key=secret.encode()).digest()


def prologue_for(initiator, responder):
    return f"parley-p2p-2\n{initiator}\n{responder}".encode()


def new_static():
    return os.urandom(32)


def static_for(name, config_home=None):
    """The identity key of `name` as the real client keeps it under `config_home` (default the
    tests' shared XDG_CONFIG_HOME), made there on first use: a raw peer is then the same
    device as a real client of that user, and pins made by either fit the other."""
    if config_home is None:
        from conftest import CONFIG_HOME as config_home
    d = os.path.join(config_home, "parley", name)
    path = os.path.join(d, "identity")
    os.makedirs(d, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as f:
            return bytes.fromhex(f.read().strip())
    key = os.urandom(32)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def public_of(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(priv, pub):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))


def _hkdf(ck, ikm, n):
    temp = hmac.new(ck, ikm, hashlib.sha256).digest()
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac.new(temp, prev + bytes([i]), hashlib.sha256).digest()
        out.append(prev)
    return out


class _Cipher:
    def __init__(self, k=None):
        self.k, self.n = k, 0

    def enc(self, ad, pt):
        ct = ChaCha20Poly1305(self.k).encrypt(b"\0" * 4 + struct.pack("<Q", self.n), pt, ad)
        self.n += 1
        return ct

    def dec(self, ad, ct):
        pt = ChaCha20Poly1305(self.k).decrypt(b"\0" * 4 + struct.pack("<Q", self.n), ct, ad)
        self.n += 1
        return pt


class Noise:
    """Noise_XXpsk3_25519_ChaChaPoly_SHA256, one side."""
    PATTERN = [["e"], ["e", "ee", "s", "es"], ["s", "se", "psk"]]

    def __init__(self, initiator, static, psk, prologue):
        self.initiator, self.s, self.psk = initiator, static, psk
        self.h = hashlib.sha256(PROTOCOL).digest()
        self.ck = self.h
        self.cs = _Cipher()
        self._mix_hash(prologue)
        self.e = self.re = self.remote_static = None
        self.step = 0
        self.tx = self.rx = None

    @property
    def done(self):
        return self.step == 3

    def _mix_hash(self, data):
        self.h = hashlib.sha256(self.h + data).digest()

    def _mix_key(self, ikm):
        self.ck, k = _hkdf(self.ck, ikm, 2)
        self.cs = _Cipher(k)

    def _enc_hash(self, pt):
        ct = self.cs.enc(self.h, pt) if self.cs.k else pt
        self._mix_hash(ct)
        return ct

    def _dec_hash(self, ct):
        pt = self.cs.dec(self.h, ct) if self.cs.k else ct
        self._mix_hash(ct)
        return pt

    def _dh_token(self, t):
        mine = {"ee": self.e, "es": self.e if self.initiator else self.s,
                "se": self.s if self.initiator else self.e}[t]
        theirs = {"ee": self.re, "es": self.remote_static if self.initiator else self.re,
                  "se": self.re if self.initiator else self.remote_static}[t]
        self._mix_key(_dh(mine, theirs))

    def _token(self, t, out=None, msg=None):
        if t == "psk":
            self.ck, th, k = _hkdf(self.ck, self.psk, 3)
            self._mix_hash(th)
            self.cs = _Cipher(k)
        elif t in ("ee", "es", "se"):
            self._dh_token(t)
        elif out is not None and t == "e":
            self.e = os.urandom(32)
            pub = public_of(self.e)
            out.append(pub)
            self._mix_hash(pub)
            self._mix_key(pub)
        elif out is not None:
            out.append(self._enc_hash(public_of(self.s)))
        elif t == "e":
            self.re, msg[0] = msg[0][:32], msg[0][32:]
            self._mix_hash(self.re)
            self._mix_key(self.re)
        else:
            n = 48 if self.cs.k else 32
            self.remote_static, msg[0] = self._dec_hash(msg[0][:n]), msg[0][n:]

    def _finish(self):
        self.step += 1
        if self.step == 3:
            k1, k2 = _hkdf(self.ck, b"", 2)
            self.tx, self.rx = (_Cipher(k1), _Cipher(k2)) if self.initiator else \
                (_Cipher(k2), _Cipher(k1))

    def write_handshake(self, payload=b""):
        out = []
        for t in self.PATTERN[self.step]:
            self._token(t, out=out)
        out.append(self._enc_hash(payload))
        self._finish()
        return b"".join(out)

    def read_handshake(self, msg):
        rest = [msg]
        for t in self.PATTERN[self.step]:
            self._token(t, msg=rest)
        payload = self._dec_hash(rest[0])
        self._finish()
        return payload

    def seal(self, pt):
        return self.tx.enc(b"", pt)

    def open(self, ct):
        return self.rx.dec(b"", ct)


def record(body):
    return struct.pack(">H", len(body)) + body


class NoisePeer:
    """One side of a P2P session on a socket."""

    def __init__(self, sock, noise):
        self.sock, self.noise, self.buf = sock, noise, b""

    def _read(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                raise Refused(self.buf)
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_record(self):
        (n,) = struct.unpack(">H", self._read(2))
        return self._read(n)

    def recv_frame(self):
        return self.noise.open(self.recv_record())

    def send_record(self, body):
        self.sock.sendall(record(body))

    def send_frame(self, pt):
        self.send_record(self.noise.seal(pt))

    def send_raw(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()

    @classmethod
    def connect(cls, port, me, peer, secret, static=None, host="127.0.0.1"):
        sk = socket.create_connection((host, port), timeout=TIMEOUT)
        n = Noise(True, static or static_for(me), psk_for(secret, me, peer), prologue_for(me, peer))
        sk.sendall(f"HELLO {HELLO_VERSION} {me} {PROTOCOL.decode()}\n".encode() +
                   record(n.write_handshake()))
        p = cls(sk, n)
        try:
            first = p._read(1)
            p.buf = first + p.buf
            if first != b"\0":
                raise Refused(p.buf + sk.recv(4096))
            n.read_handshake(p.recv_record())
            p.send_record(n.write_handshake())
            ok = p.recv_frame()
        except Refused:
            sk.close()
            raise
        if ok != f"OK {peer}".encode():
            raise Refused(ok)
        return p

    @classmethod
    def accept(cls, sk, me, peer, secret, static=None):
        sk.settimeout(TIMEOUT)
        n = Noise(False, static or static_for(me), psk_for(secret, peer, me), prologue_for(peer, me))
        p = cls(sk, n)
        line = b""
        while not line.endswith(b"\n"):
            line += p._read(1)
        want = f"HELLO {HELLO_VERSION} {peer} {PROTOCOL.decode()}\n".encode()
        if line != want:
            raise Refused(line)
        n.read_handshake(p.recv_record())
        p.send_record(n.write_handshake())
        n.read_handshake(p.recv_record())
        p.send_frame(f"OK {me}".encode())
        return p
