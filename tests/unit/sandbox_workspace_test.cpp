// The host side of a workspace: writes never follow links, removal never leaves the tree.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "sandbox/workspace.h"

namespace cutor::sandbox {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = "/tmp/cutor-wstest-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    root_ = templ;
    fs::create_directories(root_ + "/outside");
    std::ofstream(root_ + "/outside/canary") << "alive";
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string root_;
};

TEST_F(WorkspaceTest, WritesFilesWithModesAndParents) {
  auto ws = create_workspace(root_ + "/parent/missing", "w1", {});
  ws->write_file("src/deep/main.c", "int main(){}", false);
  ws->write_file("run.sh", "echo", true);
  ws->write_file("empty", "", false);
  EXPECT_EQ(read_file(ws->path() + "/src/deep/main.c"), "int main(){}");
  struct stat st;
  ASSERT_EQ(::stat((ws->path() + "/run.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((ws->path() + "/src/deep/main.c").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(::stat(ws->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  EXPECT_EQ(read_file(ws->path() + "/empty"), "");
}

TEST_F(WorkspaceTest, RefusesBadPaths) {
  auto ws = create_workspace(root_, "w", {});
  for (const char* bad :
       {"", "/etc/passwd", "../x", "a/../b", "./a", "a//b", "a/", "a\\b", "a/./b"}) {
    EXPECT_THROW(ws->write_file(bad, "x", false), std::system_error) << bad;
  }
  EXPECT_THROW(ws->write_file(std::string("a\0b", 3), "x", false), std::system_error);
  EXPECT_THROW(ws->write_file(std::string(256, 'a'), "x", false), std::system_error);
  EXPECT_NO_THROW(ws->write_file(std::string(255, 'a'), "x", false));
  EXPECT_FALSE(fs::exists(root_ + "/x"));
  EXPECT_FALSE(fs::exists(root_ + "/b"));
}

TEST_F(WorkspaceTest, RefusesSymlinksFifosAndExistingFiles) {
  auto ws = create_workspace(root_, "w", {});
  const std::string p = ws->path();
  ASSERT_EQ(::symlink((root_ + "/outside").c_str(), (p + "/dirlink").c_str()), 0);
  ASSERT_EQ(::symlink((root_ + "/outside/canary").c_str(), (p + "/filelink").c_str()), 0);
  ASSERT_EQ(::symlink((root_ + "/outside/new").c_str(), (p + "/dangling").c_str()), 0);
  ASSERT_EQ(::mkfifo((p + "/fifo").c_str(), 0644), 0);
  EXPECT_THROW(ws->write_file("dirlink/canary", "pwned", false), std::system_error);
  EXPECT_THROW(ws->write_file("dirlink/sub/new", "pwned", false), std::system_error);
  EXPECT_THROW(ws->write_file("filelink", "pwned", false), std::system_error);
  EXPECT_THROW(ws->write_file("dangling", "pwned", false), std::system_error);
  EXPECT_THROW(ws->write_file("fifo", "x", false), std::system_error);
  EXPECT_THROW(ws->write_file("fifo/x", "x", false), std::system_error);
  ws->write_file("once", "1", false);
  EXPECT_THROW(ws->write_file("once", "2", false), std::system_error);
  EXPECT_EQ(read_file(p + "/once"), "1");
  EXPECT_EQ(read_file(root_ + "/outside/canary"), "alive");
  EXPECT_FALSE(fs::exists(root_ + "/outside/new"));
  EXPECT_FALSE(fs::exists(root_ + "/outside/sub"));
}

TEST_F(WorkspaceTest, DestructorRemovesTreeButNotLinkTargets) {
  std::string path;
  {
    auto ws = create_workspace(root_, "w", {});
    path = ws->path();
    ws->write_file("a/b/c.txt", "x", false);
    ASSERT_EQ(::symlink((root_ + "/outside").c_str(), (path + "/a/b/link").c_str()), 0);
    ASSERT_EQ(::symlink("/", (path + "/root").c_str()), 0);
    ASSERT_EQ(::link((root_ + "/outside/canary").c_str(), (path + "/hardlink").c_str()), 0);
    ASSERT_EQ(::mkdir((path + "/locked").c_str(), 0), 0);  // no permissions at all
    ASSERT_EQ(::mkdir((path + "/locked/inner").c_str(), 0), 0);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(read_file(root_ + "/outside/canary"), "alive");
  EXPECT_TRUE(fs::exists("/etc/passwd"));
}

TEST_F(WorkspaceTest, RemovalDoesNotCrossMountPoints) {
  auto ws = create_workspace(root_, "w", {});
  const std::string mnt = ws->path() + "/mnt";
  ASSERT_EQ(::mkdir(mnt.c_str(), 0755), 0);
  ASSERT_EQ(::mount((root_ + "/outside").c_str(), mnt.c_str(), nullptr, MS_BIND, nullptr), 0);
  int fd = ::open(ws->path().c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(remove_directory_contents(fd));  // the mount point stays
  ::close(fd);
  EXPECT_EQ(read_file(root_ + "/outside/canary"), "alive");
  ASSERT_EQ(::umount2(mnt.c_str(), MNT_DETACH), 0);
}

TEST_F(WorkspaceTest, ReplacesALeftoverOfTheSameName) {
  fs::create_directories(root_ + "/w/old/dir");
  std::ofstream(root_ + "/w/old/file") << "stale";
  ASSERT_EQ(::symlink((root_ + "/outside").c_str(), (root_ + "/w/old/link").c_str()), 0);
  auto ws = create_workspace(root_, "w", {});
  EXPECT_TRUE(fs::is_empty(ws->path()));
  EXPECT_EQ(read_file(root_ + "/outside/canary"), "alive");
}

TEST_F(WorkspaceTest, RefusesNamesThatAreNotOneComponent) {
  EXPECT_THROW(create_workspace(root_, "a/b", {}), std::system_error);
  EXPECT_THROW(create_workspace(root_, "..", {}), std::system_error);
  EXPECT_THROW(create_workspace(root_, "", {}), std::system_error);
}

TEST_F(WorkspaceTest, TmpfsWorkspaceIsSizeLimitedOwnedAndUnmounted) {
  WorkspaceOptions options;
  options.tmpfs_bytes = 1 << 20;
  options.owner_uid = 60999;
  options.owner_gid = 60999;
  std::string path;
  {
    auto ws = create_workspace(root_, "t", options);
    path = ws->path();
    ws->write_file("dir/f", "x", false);
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 60999u);
    ASSERT_EQ(::stat((path + "/dir").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 60999u);
    ASSERT_EQ(::stat((path + "/dir/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 60999u);
    EXPECT_EQ(st.st_gid, 60999u);
    EXPECT_THROW(ws->write_file("big", std::string(2 << 20, 'x'), false), std::system_error);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(read_file("/proc/self/mounts").find(path), std::string::npos);
}

// A compiled workspace is copied for each test: what the program left there is copied as
// data, never followed, and nothing outside the tree is read or written.
TEST_F(WorkspaceTest, CopyFromCopiesTheTreeWithoutFollowingAnything) {
  auto from = create_workspace(root_, "from", {});
  from->write_file("prog",
                   std::string("\x7f"
                               "ELF\0\xff",
                               6),
                   true);
  from->write_file("dir/sub/data.txt", "data", false);
  const std::string f = from->path();
  ASSERT_EQ(::chmod((f + "/dir/sub/data.txt").c_str(), 04755), 0);  // set-uid: dropped
  ASSERT_EQ(::symlink((root_ + "/outside/canary").c_str(), (f + "/link").c_str()), 0);
  ASSERT_EQ(::mkfifo((f + "/fifo").c_str(), 0644), 0);
  ASSERT_EQ(::mkdir((f + "/mnt").c_str(), 0755), 0);
  ASSERT_EQ(::mount("cutor-copy-test", (f + "/mnt").c_str(), "tmpfs", 0, "size=64k"), 0);
  std::ofstream(f + "/mnt/other") << "another filesystem";

  auto to = create_workspace(root_, "to", {.owner_uid = 12345, .owner_gid = 12346});
  to->copy_from(*from);
  ASSERT_EQ(::umount2((f + "/mnt").c_str(), MNT_DETACH), 0);
  const std::string t = to->path();
  EXPECT_EQ(read_file(t + "/prog"), std::string("\x7f"
                                                "ELF\0\xff",
                                                6));
  EXPECT_EQ(read_file(t + "/dir/sub/data.txt"), "data");
  struct stat st;
  ASSERT_EQ(::stat((t + "/prog").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 12345u);
  EXPECT_EQ(st.st_gid, 12346u);
  ASSERT_EQ(::stat((t + "/dir/sub/data.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::lstat((t + "/link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));  // a link, still pointing where it did
  EXPECT_EQ(st.st_uid, 12345u);
  EXPECT_EQ(fs::read_symlink(t + "/link"), root_ + "/outside/canary");
  EXPECT_FALSE(fs::exists(fs::symlink_status(t + "/fifo")));  // not copied
  EXPECT_FALSE(fs::exists(t + "/mnt"));  // another filesystem: left out, mount point and all
  EXPECT_EQ(read_file(root_ + "/outside/canary"), "alive");
}

TEST_F(WorkspaceTest, CopyFromRefusesATreeTooDeep) {
  auto from = create_workspace(root_, "from", {});
  std::string deep;
  for (int i = 0; i <= kMaxCopyDepth + 1; ++i) deep += "d/";
  from->write_file(deep + "f", "x", false);
  auto to = create_workspace(root_, "to", {});
  try {
    to->copy_from(*from);
    FAIL() << "copied a tree deeper than kMaxCopyDepth";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ELOOP);
    EXPECT_NE(std::string(e.what()).find("nested deeper"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cutor::sandbox
