"""A fake DICOMweb server for tests: it answers every request with what the test scripted (status, media
type, body, and optionally a drip of one byte at a time), so clients meet the malformed answers, errors
and slow servers that real PACSs produce."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Answer:
    """What the server sends: HTTP `status`, `media_type`, `body`; with `drip_s`, one byte every that
    many seconds (and no Content-Length)."""

    status: int = 200
    media_type: str = "application/dicom+json"
    body: bytes = b"[]"
    drip_s: float | None = None


class FakeDicomWeb:
    """The running server: set `answer`; `url` is its DICOMweb root; `requests` counts what it got."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.requests = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _respond(self) -> None:
                fake.requests += 1
                answer = fake.answer
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.media_type)
                if answer.drip_s is None:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.drip_s is None:
                    self.wfile.write(answer.body)
                    return
                for byte in answer.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(answer.drip_s)

            do_GET = do_POST = _respond

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"

    @contextmanager
    def running(self) -> Iterator[FakeDicomWeb]:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
