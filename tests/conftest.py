"""Fixtures shared by test files."""

import http.server
import threading

import pytest

ARCHIVE_URL_PATH = "/cifar-100-python.tar.gz"


@pytest.fixture
def start_http_server():
    """Start threaded HTTP servers on 127.0.0.1 (port chosen by the OS); all are stopped after the test.

    start_http_server(HandlerClass, **attributes) returns the server with the attributes set (the
    handler reads them as self.server.<name>), a `lock` for them, and `url`, where the archive is.
    """
    running = []

    def start(handler: type, **attributes) -> http.server.ThreadingHTTPServer:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.lock = threading.Lock()
        httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}{ARCHIVE_URL_PATH}"
        for name, value in attributes.items():
            setattr(httpd, name, value)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((httpd, thread))
        return httpd

    yield start
    for httpd, thread in running:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
