// store_fill: fills a cutor data directory with finished submissions through the store
// library (src/store), the same code path the server writes with, so the rows, indexes
// and encodings are the real ones (bench/run.sh builds it against build/release).
//
//   store_fill DB_PATH COUNT IDS_OUT [SAMPLE]
//
// Each submission is an `echo hi` request that went through the API's states: insert
// (QUEUED), the build and run stages written OK, then finish(OK). The store is opened
// with synchronous_full=false (fsync at WAL checkpoints only) to fill fast; that changes
// durability, not the layout the server later reads. Writes SAMPLE ids (default 10,000,
// spread evenly over the whole range) to IDS_OUT for the GET benchmark.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "model/submission.h"
#include "store/submission_store.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: store_fill DB_PATH COUNT IDS_OUT [SAMPLE]\n";
    return 2;
  }
  const std::string db = argv[1];
  const long count = std::atol(argv[2]);
  const std::string ids_out = argv[3];
  const long sample = argc > 4 ? std::atol(argv[4]) : 10'000;
  if (count < 1 || count > 10'000'000 || sample < 1) {
    std::cerr << "store_fill: COUNT must be 1..10000000 and SAMPLE positive\n";
    return 2;
  }
  try {
    auto store = cutor::open_sqlite_store({.path = db, .synchronous_full = false});
    cutor::Submission proto;
    proto.request.files = {{"run.sh", "echo hi\n"}};
    for (cutor::Stage s : cutor::kLimitedStages)
      proto.request.limits[static_cast<int>(s)] = cutor::LimitTable::builtin().default_for(s);
    cutor::StageResult build;
    build.status = cutor::StageStatus::kOk;
    build.code = 0;
    build.wall_time_us = 150;
    cutor::StageResult run;
    run.status = cutor::StageStatus::kOk;
    run.stdout_data = "hi\n";
    run.output = "hi\n";
    run.code = 0;
    run.wall_time_us = 900;
    run.cpu_time_us = 600;
    run.memory_bytes = 1 << 20;

    std::ofstream ids(ids_out, std::ios::trunc);
    if (!ids) throw std::runtime_error("cannot write " + ids_out);
    const long every = std::max(1L, count / sample);
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < count; ++i) {
      cutor::Submission s = proto;
      s.id = cutor::new_uuid();
      s.created_at_ms = cutor::now_unix_ms();
      store->insert(s, 0);
      store->set_status(s.id, cutor::SubmissionStatus::kBuilding);
      store->set_stage(s.id, cutor::Stage::kBuild, build);
      store->set_status(s.id, cutor::SubmissionStatus::kRunning);
      store->set_stage(s.id, cutor::Stage::kRun, run);
      if (!store->finish(s.id, cutor::Result::kOk))
        throw std::runtime_error("finish(" + s.id + ") refused");
      if (i % every == 0) ids << s.id << "\n";
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("filled=%ld total=%lld seconds=%.1f rows_per_s=%.0f\n", count,
                static_cast<long long>(store->count_all()), secs,
                static_cast<double>(count) / secs);
  } catch (const std::exception& e) {
    std::cerr << "store_fill: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
