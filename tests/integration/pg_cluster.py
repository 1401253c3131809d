"""A real PostgreSQL 15 for the fleet tests: initdb into a temporary directory, the server
on a unix socket there only (no TCP), stopped and removed after. As root the server runs
as Debian's `postgres` user (it refuses to run as root)."""

import os
import shutil
import subprocess
import tempfile

PG_BIN = os.environ.get("CUTOR_PG_BIN", "/usr/lib/postgresql/15/bin")


def _as_owner(args):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args


def remove_abandoned_clusters():
    """Stops and removes /tmp/cutor-pg-* clusters whose owner process is gone."""
    for name in os.listdir("/tmp"):
        path = os.path.join("/tmp", name)
        if not name.startswith("cutor-pg-"):
            continue
        try:
            with open(os.path.join(path, "owner.pid")) as f:
                owner = int(f.read().strip())
            os.kill(owner, 0)
            continue  # alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue
        subprocess.run(_as_owner([f"{PG_BIN}/pg_ctl", "-D", os.path.join(path, "data"), "-m",
                                  "immediate", "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)


class PgCluster:
    def __init__(self):
        remove_abandoned_clusters()
        self.dir = tempfile.mkdtemp(prefix="cutor-pg-", dir="/tmp")
        # Who owns it, so a run that was killed is cleaned up by the next one (the unit
        # tests' store_pg_cluster.h writes and sweeps the same).
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        self.data = os.path.join(self.dir, "data")
        self._dbs = 0
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, args):
        subprocess.run(_as_owner(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def start(self):
        self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "cutor", "-A", "trust", "-E",
                   "UTF8", "--no-sync"])
        opts = (f"-k {self.dir} -c listen_addresses= -c fsync=off -c full_page_writes=off"
                " -c max_connections=300")
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-o", opts, "-w", "-l",
                   os.path.join(self.dir, "log"), "start"])
        return self

    def restart(self):
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-l",
                   os.path.join(self.dir, "log"), "restart"])

    def new_database(self):
        self._dbs += 1
        name = f"fleet{self._dbs}"
        self.psql(f"CREATE DATABASE {name}")
        return f"postgresql://cutor@/{name}?host={self.dir}"

    def psql(self, sql, db="postgres"):
        out = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                              "-h", self.dir, "-U", "cutor", "-d", db, "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def stop(self):
        subprocess.run(_as_owner([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate",
                                       "-w", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
