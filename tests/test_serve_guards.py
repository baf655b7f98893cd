"""The server against careless and hostile clients: uploads framed to dodge the size limit, slow and
idle connections, clients leaving mid-upload, more connections than it takes. Against the real
uvicorn server (HTTP parsing included), in this process, with short time limits."""

import contextlib
import json
import logging
import socket
import threading
import time

import pytest

from conftest import wait_until
from harness.local_server import free_ports
from reader.classifier import keras_classifier
from server.app import create_app
from server.guards import MAX_CLIENT_CONNECTIONS, MAX_CONNECTIONS, guarded_server

pytestmark = [pytest.mark.network]


SECONDS = 1.0  # the server's header and upload time limits here


@pytest.fixture(scope="module")
def server(trained_run):
    port = free_ports(1)[0]
    server = guarded_server(
        create_app(keras_classifier(trained_run.model), upload_seconds=SECONDS),
        "127.0.0.1",
        port,
        header_seconds=SECONDS,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "the server to start")
    assert server.started, "the server stopped at start-up"
    yield server
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def address(server):
    return server.config.host, server.config.port


def open_connections(server) -> int:
    return len(server.server_state.connections)


def connect(address) -> socket.socket:
    return socket.create_connection(address, timeout=SECONDS + 5)


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_chunked_body_beside_a_content_length_is_refused(address):
    # Content-Length would pass the size check while the parser reads the chunked body whole.
    sock = connect(address)
    chunk = b"\0" * 1_000_000
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with contextlib.suppress(OSError):  # the server may answer and close before the body is sent
        for _ in range(4):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    response = answer(sock)
    assert status_of(response) == 400 and b"not both" in response


def test_a_chunked_body_without_a_length_is_refused(address):
    sock = connect(address)
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert status_of(answer(sock)) == 411


def test_a_body_sent_with_another_method_is_refused_unread(address):
    sock = connect(address)
    sock.sendall(b"PUT /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    response = answer(sock)  # at once, and the connection closed: nothing waits for the rest
    assert status_of(response) == 400 and b"only POST takes a body" in response


def test_an_upload_that_stalls_is_answered_408(address):
    sock = connect(address)
    sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"\x89PNG")
    started = time.monotonic()
    response = answer(sock)
    assert status_of(response) == 408 and b"took over" in response
    assert time.monotonic() - started < SECONDS + 3


@pytest.mark.parametrize("trickle", [False, True], ids=["idle", "headers-a-byte-at-a-time"])
def test_a_connection_without_a_whole_request_is_closed(address, trickle):
    sock = connect(address)
    started = time.monotonic()
    if trickle:
        with contextlib.suppress(OSError):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                sock.send(bytes([byte]))
                time.sleep(0.1)
    assert answer(sock) == b""
    assert time.monotonic() - started < SECONDS + 3


def test_a_client_leaving_mid_upload_is_no_error_in_the_log(server, address, caplog):
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        for _ in range(5):
            sock = connect(address)
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
            time.sleep(0.05)
            sock.close()
        wait_until(lambda: open_connections(server) == 0, 10, "the server to close the connections")
        sock = connect(address)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(answer(sock)) == 200
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_connections_past_the_limit_are_answered_503_in_json(server, address):
    # From as many client addresses as it takes, each holding as many connections as it may.
    hosts = [f"127.0.0.{10 + index // MAX_CLIENT_CONNECTIONS}" for index in range(MAX_CONNECTIONS)]
    held = [
        socket.create_connection(address, timeout=SECONDS + 5, source_address=(host, 0)) for host in hosts
    ]
    wait_until(lambda: open_connections(server) == MAX_CONNECTIONS, 10, "the server to take every connection")
    sock = connect(address)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = answer(sock)
    for other in held:
        other.close()
    head, body = response.split(b"\r\n\r\n", 1)
    assert status_of(response) == 503 and b"content-type: application/json" in head.lower()
    assert b"retry-after: " in head.lower()
    assert f"limit of {MAX_CONNECTIONS} open connections" in json.loads(body)["detail"]


def test_a_malformed_request_line_is_answered_400_in_json_with_the_security_headers(address):
    sock = connect(address)
    sock.sendall(b"GET /healthz HTTP/1.1 and more\r\nHost: x\r\n\r\n")
    head, body = answer(sock).split(b"\r\n\r\n", 1)
    assert status_of(head) == 400 and b"content-type: application/json" in head.lower()
    assert b"x-frame-options: DENY" in head and b"content-security-policy: " in head
    assert "not a valid HTTP/1.1 request" in json.loads(body)["detail"]


@pytest.fixture
def patient_server(trained_run):
    """A server whose header deadline outlasts the test: slow clients' connections stay open."""
    port = free_ports(1)[0]
    server = guarded_server(
        create_app(keras_classifier(trained_run.model)), "127.0.0.1", port, header_seconds=60.0
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, "the server to start")
    yield server
    server.should_exit = True
    thread.join(timeout=10)


def connections_from(server, host: str) -> int:
    # list() copies the set whole while the server's thread waits (the GIL): no change midway.
    return sum(1 for held in list(server.server_state.connections) if held.client and held.client[0] == host)


def test_one_client_trickling_headers_on_many_connections_leaves_the_others_served(patient_server):
    address = patient_server.config.host, patient_server.config.port

    def slow_client() -> socket.socket:  # 127.0.0.2: the loopback network is all of 127/8
        return socket.create_connection(address, timeout=10, source_address=("127.0.0.2", 0))

    # One client holds as many connections as it may, each with a request begun, never finished...
    slow = [slow_client() for _ in range(MAX_CLIENT_CONNECTIONS)]
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
    wait_until(
        lambda: connections_from(patient_server, "127.0.0.2") == len(slow), 10, "the server to take them"
    )
    # ... and asks for more than the server takes in all.
    more = [slow_client() for _ in range(MAX_CONNECTIONS)]
    try:
        wait_until(
            lambda: len(patient_server.server_state.connections) == MAX_CLIENT_CONNECTIONS,
            10,
            "the server to close the slow client's connections past its bound",
        )
        for host in ("127.0.0.1", "127.0.0.3"):  # other clients are served
            for _ in range(5):
                sock = socket.create_connection(address, timeout=10, source_address=(host, 0))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert status_of(answer(sock)) == 200
        head, body = answer(more[0]).split(b"\r\n\r\n", 1)
    finally:
        for sock in slow + more:
            sock.close()
    assert status_of(head) == 503 and b"retry-after: " in head.lower() and b"x-frame-options" in head
    assert f"127.0.0.2 holds {MAX_CLIENT_CONNECTIONS} open connections" in json.loads(body)["detail"]
