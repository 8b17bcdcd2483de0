"""A TCP proxy in front of a PACS that forwards the first FORWARD connections and holds every later
one open without a byte in either direction: a PACS that answers the campaign's echo and query and
then stalls a retrieval. Writes its port to PORT_FILE once listening; runs until killed.
Usage: stall_proxy.py TARGET_HOST TARGET_PORT FORWARD PORT_FILE"""
import os
import socket
import sys
import threading

host, port, forward, port_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def hold(conn):
    try:
        while conn.recv(65536):  # read and drop: the peer's request is never answered
            pass
    except OSError:
        pass


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
with open(port_file + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
accepted = 0
while True:
    conn, _ = listener.accept()
    accepted += 1
    if accepted <= forward:
        upstream = socket.create_connection((host, port))
        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
    else:
        threading.Thread(target=hold, args=(conn,), daemon=True).start()
