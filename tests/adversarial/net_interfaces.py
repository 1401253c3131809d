# The box's network: its interfaces by index (SIOCGIFNAME for every index: all interfaces,
# up or down, with an address or not; netlink, which if_nameindex() uses, is refused in the
# box), /proc/net/dev, and the routes. Only lo may exist and no route may lead anywhere.
import fcntl
import socket
import struct

SIOCGIFNAME = 0x8910
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
names = []
for index in range(1, 4096):
    try:
        ifreq = fcntl.ioctl(s, SIOCGIFNAME, struct.pack("16si20x", b"", index))
    except OSError:
        continue
    names.append(ifreq[:16].split(b"\0")[0].decode())
print("by_index", sorted(names))
with open("/proc/net/dev") as f:
    print("proc_net_dev", sorted(line.split(":")[0].strip() for line in f.readlines()[2:]))
with open("/proc/net/route") as f:
    print("routes", len(f.readlines()) - 1)
