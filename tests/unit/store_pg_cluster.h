// A real PostgreSQL 15 for the store tests: initdb into a temporary directory, the server
// on a unix socket there (no TCP), stopped and removed at exit. As root it runs as the
// `postgres` user of Debian's postgresql package (the server refuses to run as root).
// One cluster per test binary (PgCluster::shared()); each test takes a fresh database.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

namespace cutor::testing_util {

class PgCluster {
 public:
  static PgCluster& shared() {
    static PgCluster cluster;
    return cluster;
  }

  // A new empty database; returns its URL.
  std::string new_database() {
    std::string name = "t" + std::to_string(getpid()) + "_" + std::to_string(++databases_);
    psql("CREATE DATABASE " + name);
    return url(name);
  }
  std::string url(const std::string& db) const {
    return "postgresql://cutor@/" + db + "?host=" + dir_;
  }
  // Runs one statement as the superuser through psql.
  void psql(const std::string& sql, const std::string& db = "postgres") const {
    run(bin("psql") + " -X -q -v ON_ERROR_STOP=1 -h " + dir_ + " -U cutor -d " + db + " -c \"" +
        sql + "\" >/dev/null");
  }
  // A fast restart: every connection is closed, the data stays.
  void restart() const {
    run(as_owner(bin("pg_ctl") + " -D " + dir_ + "/data -m fast -w restart -l " + dir_ +
                 "/log >/dev/null"));
  }

  ~PgCluster() {
    std::system(
        as_owner(bin("pg_ctl") + " -D " + dir_ + "/data -m immediate -w stop >/dev/null 2>&1")
            .c_str());
    std::filesystem::remove_all(dir_);
  }

 private:
  PgCluster() {
    remove_abandoned_clusters();
    char tmpl[] = "/tmp/cutor-pg-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    // Who owns it: a test binary that crashes skips its destructor, and the next one
    // stops and removes what it left (remove_abandoned_clusters).
    std::ofstream(dir_ + "/owner.pid") << getpid() << "\n";
    if (geteuid() == 0) run("chown postgres: " + dir_);
    run(as_owner(bin("initdb") + " -D " + dir_ + "/data -U cutor -A trust -E UTF8 --no-sync >" +
                 dir_ + "/initdb.log 2>&1"));
    const std::string opts = "-k " + dir_ +
                             " -c listen_addresses= -c fsync=off -c full_page_writes=off"
                             " -c max_connections=300";
    run(as_owner(bin("pg_ctl") + " -D " + dir_ + "/data -o '" + opts + "' -w -l " + dir_ +
                 "/log start >/dev/null"));
  }
  // Clusters under /tmp/cutor-pg-* whose owner.pid names a process that is gone.
  static void remove_abandoned_clusters() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
      const std::string path = entry.path().string();
      if (!entry.path().filename().string().starts_with("cutor-pg-")) continue;
      std::ifstream in(path + "/owner.pid");
      pid_t owner = 0;
      if (!(in >> owner) || owner <= 0 || ::kill(owner, 0) == 0 || errno != ESRCH) continue;
      std::system(
          as_owner(bin("pg_ctl") + " -D " + path + "/data -m immediate -w stop >/dev/null 2>&1")
              .c_str());
      std::filesystem::remove_all(path, ec);
    }
  }
  static std::string bin(const std::string& name) {
    const char* dir = std::getenv("CUTOR_PG_BIN");
    return std::string(dir ? dir : "/usr/lib/postgresql/15/bin") + "/" + name;
  }
  static std::string as_owner(const std::string& cmd) {
    if (geteuid() != 0) return cmd;
    return "runuser -u postgres -- " + cmd;
  }
  void run(const std::string& cmd) const {
    if (std::system(cmd.c_str()) != 0)
      throw std::runtime_error("postgres test cluster: failed: " + cmd + " (log in " + dir_ + ")");
  }

  std::string dir_;
  std::atomic<int> databases_{0};
};

}  // namespace cutor::testing_util
