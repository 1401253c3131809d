// HTTP metrics of the API server in Prometheus text format (0.0.4). Thread-safe.
//
// Only what the request handler itself observes lives here; stage durations are the
// executor's and reach /metrics through HttpServerConfig::extra_metrics_text.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cutor {

// A cumulative histogram with fixed upper bounds (seconds, bytes...).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // "<name>_bucket{le=...}", "<name>_sum", "<name>_count" lines; `labels` is either
  // empty or `key="value",...` without braces. No HELP/TYPE lines.
  std::string render(std::string_view name, std::string_view labels) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last one is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class HttpMetrics {
 public:
  HttpMetrics();
  // Counts one answered request by status code and times it.
  void record(int status_code, double seconds);
  // cutor_http_requests_total{code="..."} and cutor_http_request_duration_seconds, with
  // HELP and TYPE lines.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<int, uint64_t> by_code_;
  Histogram duration_;
};

}  // namespace cutor
