// The store when the disk fails it: a data dir that turns read-only, one that is
// read-only from the start, and one that fills up. Each case runs in a forked child
// inside its own mount namespace (we are root, so file modes alone would not stop a
// write): the tmpfs and read-only binds it makes disappear when the child exits.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>

#include "store/submission_store.h"

namespace cutor {
namespace {

// In the child: report the failed check and exit with its line number.
#define CHILD_CHECK(cond)                                                           \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      return __LINE__;                                                              \
    }                                                                               \
  } while (0)

// Runs `body` in a child with a private mount namespace where `dir` is a fresh tmpfs of
// `tmpfs_bytes`. Returns the child's exit code (0: all checks passed), or -1 when the
// namespace or tmpfs could not be made.
int run_in_private_tmpfs(const std::string& dir, size_t tmpfs_bytes,
                         const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0) {
      std::perror("unshare(CLONE_NEWNS)");
      _exit(200);
    }
    // Keep our mounts from propagating back to the host's namespace.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      std::perror("make / private");
      _exit(201);
    }
    std::string opts = "size=" + std::to_string(tmpfs_bytes) + ",mode=0700";
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      std::perror("mount tmpfs");
      _exit(202);
    }
    int rc = 1;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "unexpected exception: %s\n", e.what());
      rc = 203;
    }
    std::fflush(stderr);
    _exit(rc);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (!WIFEXITED(status)) return -1;
  int code = WEXITSTATUS(status);
  return code >= 200 && code <= 202 ? -1 : code;
}

// Makes `dir` read-only in this mount namespace: a bind of itself, then the remount
// that actually applies MS_RDONLY (one call alone stays writable).
bool make_read_only(const std::string& dir) {
  if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) return false;
  return mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
}

Submission make_submission(size_t content_bytes) {
  Submission s;
  s.id = new_uuid();
  s.created_at_ms = now_unix_ms();
  s.request.files.push_back({"run.sh", "cat data\n"});
  std::string content(content_bytes, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7919 + i / 13);
  s.request.files.push_back({"data", content});
  return s;
}

bool message_has(const StoreError& e, const std::string& part) {
  return std::string(e.what()).find(part) != std::string::npos;
}

class StoreFailureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cutor-store-fail-XXXXXX";
    ASSERT_TRUE(mkdtemp(tmpl));
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// A server killed mid-flight leaves committed rows in the -wal file; when the data dir
// is read-only afterwards, those rows must still be read (an immutable open would
// silently drop them), and writes refused.
TEST_F(StoreFailureTest, ReadOnlyAfterUncleanShutdownKeepsWalRows) {
  int rc = run_in_private_tmpfs(dir_, 16 << 20, [&]() -> int {
    std::string path = dir_ + "/cutor.db";
    Submission a = make_submission(1000), b = make_submission(2000);
    pid_t pid = fork();
    CHILD_CHECK(pid >= 0);
    if (pid == 0) {
      auto store = open_sqlite_store({.path = path});
      store->insert(a, 0);
      store->insert(b, 0);
      store->finish(b.id, Result::kOk);
      raise(SIGKILL);  // no checkpoint, no clean close
      _exit(99);
    }
    int status = 0;
    CHILD_CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
    CHILD_CHECK(std::filesystem::exists(path + "-wal"));
    CHILD_CHECK(make_read_only(dir_));

    auto store = open_sqlite_store({.path = path});
    auto got_a = store->get(a.id);
    CHILD_CHECK(got_a && got_a->request.files[1].content == a.request.files[1].content);
    auto got_b = store->get(b.id);
    CHILD_CHECK(got_b && got_b->result == Result::kOk);
    CHILD_CHECK(store->count_all() == 2);
    try {
      store->insert(make_submission(10), 0);
      CHILD_CHECK(!"insert into a read-only data dir succeeded");
    } catch (const StoreError& e) {
      std::fprintf(stderr, "insert: %s\n", e.what());
      CHILD_CHECK(message_has(e, path));
    }
    bool refused = false;
    try {
      store->requeue_unfinished();
    } catch (const StoreError&) {
      refused = true;
    }
    CHILD_CHECK(refused);
    CHILD_CHECK(store->list(std::nullopt, 10, std::nullopt).submissions.size() == 2);
    return 0;
  });
  ASSERT_NE(rc, -1) << "could not set up a private mount namespace";
  EXPECT_EQ(rc, 0) << "check on line " << rc << " failed";
}

TEST_F(StoreFailureTest, ReadOnlyDatabaseAtOpenServesReads) {
  int rc = run_in_private_tmpfs(dir_, 16 << 20, [&]() -> int {
    std::string path = dir_ + "/cutor.db";
    Submission a = make_submission(5000);
    {
      auto store = open_sqlite_store({.path = path});
      store->insert(a, 0);
      store->finish(a.id, Result::kOk);
    }  // closed cleanly: no -wal or -shm file is left
    CHILD_CHECK(make_read_only(dir_));

    auto store = open_sqlite_store({.path = path});
    auto got = store->get(a.id);
    CHILD_CHECK(got && got->result == Result::kOk);
    CHILD_CHECK(got->request.files[1].content == a.request.files[1].content);
    CHILD_CHECK(store->count_unfinished() == 0);
    try {
      store->insert(make_submission(10), 0);
      CHILD_CHECK(!"insert into a read-only database succeeded");
    } catch (const StoreError& e) {
      std::fprintf(stderr, "insert: %s\n", e.what());
      CHILD_CHECK(message_has(e, path));
    }
    CHILD_CHECK(store->get(a.id));  // still readable after the failed write
    return 0;
  });
  ASSERT_NE(rc, -1) << "could not set up a private mount namespace";
  EXPECT_EQ(rc, 0) << "check on line " << rc << " failed";
}

TEST_F(StoreFailureTest, FullDiskGivesStoreErrorAndKeepsReads) {
  int rc = run_in_private_tmpfs(dir_, 1 << 20, [&]() -> int {
    std::string path = dir_ + "/cutor.db";
    auto store = open_sqlite_store({.path = path});
    Submission first = make_submission(10000);
    store->insert(first, 0);
    CHILD_CHECK(store->get(first.id));
    int inserted = 1;
    bool full = false;
    for (int i = 0; i < 200 && !full; ++i) {
      try {
        store->insert(make_submission(64 << 10), 0);
        ++inserted;
      } catch (const QueueFullError&) {
        CHILD_CHECK(!"QueueFullError without a max_queue");
      } catch (const StoreError& e) {
        std::fprintf(stderr, "after %d inserts: %s\n", inserted, e.what());
        CHILD_CHECK(message_has(e, path));
        CHILD_CHECK(message_has(e, "full"));
        full = true;
      }
    }
    CHILD_CHECK(full);
    // Everything committed before the failure is readable; the failed row is not there.
    auto got = store->get(first.id);
    CHILD_CHECK(got && got->request.files[1].content == first.request.files[1].content);
    CHILD_CHECK(store->count_all() == inserted);
    auto page = store->list(std::nullopt, 1000, std::nullopt);
    CHILD_CHECK(static_cast<int>(page.submissions.size()) == inserted);
    // Small writes that fit still go through (the store did not wedge itself).
    bool small_write_ok = false;
    try {
      small_write_ok = store->finish(first.id, Result::kOk);
    } catch (const StoreError& e) {
      std::fprintf(stderr, "small write after full: %s\n", e.what());
    }
    if (small_write_ok) CHILD_CHECK(store->get(first.id)->result == Result::kOk);
    return 0;
  });
  ASSERT_NE(rc, -1) << "could not set up a private mount namespace";
  EXPECT_EQ(rc, 0) << "check on line " << rc << " failed";
}

}  // namespace
}  // namespace cutor
