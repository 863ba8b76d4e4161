"""Clients for a tarpit: N TCP connections that never send and read what they are
dripped as it comes (one epoll over them all, so that no server's send ever blocks on a
full receive buffer), counting the bytes and the lines (LFs) received. Imported by
scripts/tarpit-compare.py; run alone (by scripts/compare.sh for greeter-trapped) it
connects them, prints "connected N", and holds them until SIGTERM, then prints
"received bytes=B lines=L closed_by_server=C".

usage: python3 scripts/trapped_clients.py PORT N [SPREAD_SECONDS]

SPREAD_SECONDS (default 0): the connects are spread evenly over it; spread over one
drip interval, the drips then come evenly instead of in one burst an interval."""
import resource
import select
import signal
import socket
import sys
import time


def raise_fd_limit():
    """The soft open-file limit up to the hard one: N clients need N files."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class TrappedClients:
    """The clients, their sockets by fd in one epoll, and what they received."""

    def __init__(self, host="127.0.0.1", receive_buffer=4096):
        self.host = host
        self.receive_buffer = receive_buffer
        self.epoll = select.epoll()
        self.sockets = {}
        self.bytes = 0
        self.lines = 0
        self.closed_by_server = 0

    def connect(self, port, n, spread=0.0):
        """Connects N clients to PORT, evenly over SPREAD seconds, reading meanwhile."""
        start = time.monotonic()
        for i in range(n):
            self.drain_until(start + spread * i / n)
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            client.connect((self.host, port))
            client.setblocking(False)
            self.epoll.register(client.fileno(), select.EPOLLIN)
            self.sockets[client.fileno()] = client

    def drain_until(self, deadline):
        """Reads whatever arrives until DEADLINE (time.monotonic()), then returns
        after one last pass that does not wait."""
        while True:
            remaining = deadline - time.monotonic()
            for fd, _ in self.epoll.poll(max(remaining, 0.0)):
                self._read(fd)
            if remaining <= 0:
                return

    def _read(self, fd):
        client = self.sockets.get(fd)
        if client is None:
            return
        try:
            data = client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.bytes += len(data)
            self.lines += data.count(b"\n")
            return
        self.closed_by_server += 1
        self.epoll.unregister(fd)
        del self.sockets[fd]
        client.close()

    def close(self):
        for client in self.sockets.values():
            client.close()
        self.sockets.clear()
        self.epoll.close()


class _Stop(Exception):
    pass


def _stop(_signum, _frame):
    raise _Stop


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    port, n = int(sys.argv[1]), int(sys.argv[2])
    spread = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _stop)
    clients = TrappedClients()
    try:
        clients.connect(port, n, spread)
        print(f"connected {n}", flush=True)
        while True:
            clients.drain_until(time.monotonic() + 3600)
    except _Stop:
        pass
    print(f"received bytes={clients.bytes} lines={clients.lines} "
          f"closed_by_server={clients.closed_by_server}", flush=True)
    clients.close()


if __name__ == "__main__":
    main()
