"""A raw chunked POST (no ``Content-Length``), to prove that a server bounds a body while reading it."""

from __future__ import annotations

import io
import select
import socket

MiB = 1024 * 1024


class Endless(io.RawIOBase):
    """``size`` bytes of padding, generated as read, so that the test itself holds none of it."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def post_chunked(
    port: int, chunks: io.BufferedIOBase, headers: dict[str, str], path: str = "/whatsapp/webhook"
) -> tuple[int, int]:
    """POST ``path`` with ``Transfer-Encoding: chunked``, one MiB per chunk, until the body ends or the server
    answers (or hangs up); returns (HTTP status, bytes of body sent). A server that reads the whole body first answers
    only after all of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
        sent = 0
        try:
            while not select.select([sock], [], [], 0)[0]:  # stop as soon as an answer is waiting
                chunk = chunks.read(MiB)
                if not chunk:
                    sock.sendall(b"0\r\n\r\n")
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the server closed without reading the rest
            pass
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1]), sent
