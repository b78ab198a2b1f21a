"""A real SMTP server for Lockbox's tests (aiosmtpd, from PyPI).

Listens on 127.0.0.1 on a free port, prints `READY <port>`, then one JSON
line per message received: {"from", "to", "data"}. Stops when stdin closes.
"""

import json
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        print(line, flush=True)
        return "250 OK"


# A free port (aiosmtpd checks that its server answers on the port it was
# given, so it cannot be given 0).
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
controller = Controller(Sink(), hostname="127.0.0.1", port=port)
controller.start()
print(f"READY {port}", flush=True)
try:
    sys.stdin.read()
finally:
    controller.stop()
