#include "api/metrics.h"

#include <fmt/format.h>

namespace cutor {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  std::lock_guard lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(std::string_view name, std::string_view labels) const {
  std::lock_guard lock(mu_);
  const std::string sep = labels.empty() ? "" : std::string(labels) + ",";
  const std::string braces = labels.empty() ? "" : fmt::format("{{{}}}", labels);
  std::string out;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, sep, bounds_[i], cumulative);
  }
  cumulative += counts_.back();
  out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, sep, cumulative);
  out += fmt::format("{}_sum{} {}\n", name, braces, sum_);
  out += fmt::format("{}_count{} {}\n", name, braces, count_);
  return out;
}

HttpMetrics::HttpMetrics()
    : duration_({0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}) {}

void HttpMetrics::record(int status_code, double seconds) {
  {
    std::lock_guard lock(mu_);
    ++by_code_[status_code];
  }
  duration_.observe(seconds);
}

std::string HttpMetrics::render() const {
  std::string out =
      "# HELP cutor_http_requests_total HTTP requests answered, by status code.\n"
      "# TYPE cutor_http_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [code, n] : by_code_)
      out += fmt::format("cutor_http_requests_total{{code=\"{}\"}} {}\n", code, n);
  }
  out +=
      "# HELP cutor_http_request_duration_seconds Time from a request's arrival to its answer.\n"
      "# TYPE cutor_http_request_duration_seconds histogram\n";
  out += duration_.render("cutor_http_request_duration_seconds", "");
  return out;
}

}  // namespace cutor
