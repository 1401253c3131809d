// `cutor deps ...` through run_deps_command, with real Nix and the test channel.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "envcache/deps_cli.h"

namespace cutor {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

const fs::path kChannel = fs::path(__FILE__).parent_path().parent_path() / "nixpkgs";

class DepsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cutor-deps-cli-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.data_dir = dir_ + "/data";
    options_.nix_path = "nixpkgs=" + kChannel.string();
    options_.substituters = "";
  }
  void TearDown() override {
    // Remove what the tests left (roots first, so their store paths can be collected).
    std::ostringstream out, err;
    json::value list = json::parse((run({"list"}, out, err), out.str()));
    for (const auto& e : list.at("dependencies").as_array()) {
      std::ostringstream o2, e2;
      run({"rm", std::string(e.at("key").as_string())}, o2, e2);
    }
    fs::remove_all(dir_);
  }
  int run(std::vector<std::string> args, std::ostringstream& out, std::ostringstream& err) {
    return run_deps_command(args, options_, out, err);
  }
  std::string write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ + "/" + name) << content;
    return dir_ + "/" + name;
  }

  std::string dir_;
  NixCacheOptions options_;
};

TEST_F(DepsCliTest, BuildListRemove) {
  const std::string file =
      write("cutor.nix", "# " + new_uuid() +
                             "\n{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell { buildInputs = [ "
                             "pkgs.python3 ]; }");
  std::ostringstream out, err;
  ASSERT_EQ(run({"build", file}, out, err), 0) << err.str();
  json::value built = json::parse(out.str());
  EXPECT_EQ(built.at("state").as_string(), "ready");
  EXPECT_TRUE(built.at("store_path").is_string());
  EXPECT_TRUE(built.at("error").is_null());
  EXPECT_EQ(built.at("use_count").as_int64(), 1);
  const std::string key(built.at("key").as_string());

  std::ostringstream lout, lerr;
  ASSERT_EQ(run({"list"}, lout, lerr), 0);
  json::value list = json::parse(lout.str());
  const auto& deps = list.at("dependencies").as_array();
  ASSERT_EQ(deps.size(), 1u);
  EXPECT_EQ(deps[0].at("key").as_string(), key);
  bool saw_python = false;
  for (const auto& p : deps[0].at("packages").as_array())
    saw_python |= p.at("name").as_string() == "python3" && p.at("version").as_string() == "3.11.2";
  EXPECT_TRUE(saw_python);
  EXPECT_GT(deps[0].at("size_bytes").as_int64(), 0);

  std::ostringstream rout, rerr;
  EXPECT_EQ(run({"rm", key}, rout, rerr), 0) << rerr.str();
  std::ostringstream r2out, r2err;
  EXPECT_EQ(run({"rm", key}, r2out, r2err), 1);
  EXPECT_NE(r2err.str().find("no environment"), std::string::npos);
}

TEST_F(DepsCliTest, FailedBuildShowsNixsMessage) {
  const std::string file = write("bad.nix", "{ pkgs ? import <nixpkgs> {} }: pkgs.mkShell {");
  std::ostringstream out, err;
  EXPECT_EQ(run({"build", file}, out, err), 1);
  EXPECT_NE(err.str().find("syntax error"), std::string::npos) << err.str();
  json::value entry = json::parse(out.str());
  EXPECT_EQ(entry.at("state").as_string(), "failed");
  EXPECT_TRUE(entry.at("store_path").is_null());
  EXPECT_TRUE(entry.at("size_bytes").is_null());
  EXPECT_NE(std::string(entry.at("error").as_string()).find("syntax error"), std::string::npos);
}

TEST_F(DepsCliTest, UsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {}, {"nope"}, {"build"}, {"rm"}, {"list", "extra"}, {"build", dir_ + "/missing.nix"}}) {
    std::ostringstream out, err;
    EXPECT_EQ(run(args, out, err), 2);
    EXPECT_FALSE(err.str().empty());
  }
}

TEST_F(DepsCliTest, GcWithinBudgetEvictsNothing) {
  std::ostringstream out, err;
  ASSERT_EQ(run({"gc"}, out, err), 0) << err.str();
  EXPECT_EQ(json::parse(out.str()).at("evicted").as_array().size(), 0u);
}

}  // namespace
}  // namespace cutor
