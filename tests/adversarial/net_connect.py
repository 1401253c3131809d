# Connects to the host's listeners on loopback: TCP on 127.0.0.1 and ::1 (ports argv[1],
# argv[2]), an abstract unix socket (argv[3]); sends UDP to 127.0.0.1:argv[4]. The box's
# loopback is its own: everything must be refused, and the host must receive nothing.
import socket
import sys

tcp4, tcp6, abstract, udp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for family, addr in ((socket.AF_INET, ("127.0.0.1", tcp4)), (socket.AF_INET6, ("::1", tcp6))):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(addr)
        s.sendall(b"LEAK from the box\n")
        print("CONNECTED", addr)
    except OSError as e:
        print("refused", addr[0], type(e).__name__)
    finally:
        s.close()
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    u.connect("\0" + abstract)
    u.sendall(b"LEAK from the box\n")
    print("CONNECTED abstract")
except OSError as e:
    print("refused abstract", type(e).__name__)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    try:
        d.sendto(b"LEAK from the box\n", ("127.0.0.1", udp))
    except OSError as e:
        print("udp send failed", type(e).__name__)
print("udp sent")
