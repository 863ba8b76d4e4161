# The original tutorial's greeting server, for scripts/compare.sh: one blocking accept
# at a time, backlog 5. Prints "listening on ADDR" like greeter-server.
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(5)
print("listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)
while True:
    client, _ = server.accept()
    client.send(b"Hello there! This is the hosted server")
    client.close()
