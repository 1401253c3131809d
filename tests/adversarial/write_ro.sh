# Writes to every read-only place: the host base system, the generated /etc, the root, /dev
# and /proc/sys. Prints "WROTE" for any that worked.
w() { if (eval "$1") 2>/dev/null; then echo "WROTE: $1"; else echo "refused: $1"; fi; }
w 'echo x > /usr/cutor-adv'
w 'echo x >> /etc/ld.so.cache'
w 'echo x > /etc/passwd'
w 'echo "root2::0:0::/:/bin/sh" >> /etc/passwd'
w 'rm -f /etc/hosts && test ! -e /etc/hosts'
w 'touch /etc/nsswitch.conf'
w 'chmod 777 /usr/bin/env'
w 'mkdir /cutor-adv'
w 'echo x > /bin/cutor-adv'
w 'echo x > /lib/cutor-adv'
w 'echo x > /dev/cutor-adv'
w 'echo cutor-evil > /proc/sys/kernel/hostname'
w 'echo 1 > /proc/sys/vm/drop_caches'
w 'echo b > /proc/sysrq-trigger'
w 'echo x > /proc/1/comm'
w 'mv /etc/hosts /box/hosts'
w 'ln -s /box /usr/cutor-adv-link'
echo done
