"""The extension's Thrift server: osquery's generated `Extension.Processor` on a UNIX
socket at `<socket>.<uuid>`, one thread per connection (core opens a new connection for
each ping and call), stoppable without `os._exit`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

from osquery.extensions.Extension import Processor, call_args
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from rarenet.extension.sdk import Handler, error
from rarenet.extension.wire import encode_call_reply

log = logging.getLogger("rarenet.extension")

IDLE_TIMEOUT = 300.0  # a connection silent this long is closed (core's are per call)


class FastProcessor(Processor):  # type: ignore[misc]
    """osquery's generated processor, with `call`'s reply written by extension.wire."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self._processMap["call"] = FastProcessor.process_call

    def process_call(self, seqid: int, iprot: Any, oprot: Any) -> None:
        args = call_args()
        args.read(iprot)
        iprot.readMessageEnd()
        try:
            response = self._handler.call(args.registry, args.item, args.request)
            data = encode_call_reply(seqid, response)
        except Exception as exc:  # Handler.call never raises; encoding could
            log.exception("encoding the reply failed")
            data = encode_call_reply(seqid, error(f"cannot encode the reply: {exc}"))
        if isinstance(oprot.trans, _Transport):
            oprot.trans.write_through(data)
        else:
            oprot.trans.write(data)
            oprot.trans.flush()


class _Transport(TTransport.TBufferedTransport):  # type: ignore[misc]
    """Buffered for the small messages; a big reply goes to the socket in one sendall."""

    def __init__(self, sock: TSocket.TSocket) -> None:
        super().__init__(sock)
        self.sock = sock

    def write_through(self, data: bytes) -> None:
        self.flush()
        self.sock.handle.sendall(data)


class _Protocol(TBinaryProtocol):  # type: ignore[misc]
    """Requests whose strings are not UTF-8 (osquery passes a constraint's bytes as they
    are: `WHERE name = CAST(X'ff' AS TEXT)`) are read with U+FFFD instead of failing the
    read, so such a call gets an answer instead of a dropped connection."""

    def readString(self) -> str:
        return str(self.readBinary().decode("utf-8", "replace"))


class ExtensionServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.processor = FastProcessor(handler)
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a stale socket of a previous run with this uuid
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            listener.listen(64)
            listener.settimeout(0.2)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name="rarenet-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stopped.is_set():
                    log.exception("accept failed on %s", self.path)
                return
            conn.settimeout(IDLE_TIMEOUT)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sock = TSocket.TSocket()
        sock.setHandle(conn)
        transport = _Transport(sock)
        protocol = _Protocol(transport)
        try:
            while not self._stopped.is_set():
                self.processor.process(protocol, protocol)
        except TTransport.TTransportException:
            pass  # the peer closed the connection (or it idled out)
        except Exception:
            log.exception("connection on %s failed", self.path)
        finally:
            transport.close()
