#include "metrics.hpp"

#include <cctype>

#include "error.hpp"

namespace pmcr::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// 100 µs to 60 s: a STAT on an idle server to a large COMMIT on a busy one.
const Histogram::BucketBoundaries kLatency = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};

std::string lower(const char* text) {
  std::string s(text);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

prometheus::Gauge& gauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(r).Add({});
}

prometheus::Counter& counter(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return BuildCounter().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

Metrics::Metrics(const HostPort& listen, size_t max_jobs)
    : registry_(std::make_shared<prometheus::Registry>()), max_jobs_(max_jobs) {
  auto& r = *registry_;
  request_family_ = &BuildHistogram()
                         .Name("pmcr_request_duration_seconds")
                         .Help("Time from a request's arrival to its reply, by request type")
                         .Register(r);
  for (int t = 1; t <= proto::kLastType; ++t) {
    const std::string name = lower(proto::type_name(static_cast<proto::Type>(t)));
    if (name != "unknown") requests_[t] = &request_family_->Add({{"request", name}}, kLatency);
  }
  commits_ = &BuildHistogram()
                  .Name("pmcr_commit_duration_seconds")
                  .Help("Time from a successful COMMIT's arrival to its reply: the region persisted and checksummed")
                  .Register(r)
                  .Add({}, kLatency);
  failed_requests_ = &counter(r, "pmcr_requests_failed_total", "Requests answered with an error");
  regions_written_ = &counter(r, "pmcr_regions_written_total", "Regions committed (checkpoint and named regions)");
  regions_read_ = &counter(r, "pmcr_regions_read_total", "Regions opened for reading, after their verification");
  bytes_in_ = &counter(r, "pmcr_received_bytes_total", "Region bytes received from writers");
  bytes_out_ = &counter(r, "pmcr_sent_bytes_total", "Region bytes sent to readers");
  sealed_ = &counter(r, "pmcr_versions_sealed_total", "Checkpoint versions (or this server's parts of them) sealed");
  accepted_ = &counter(r, "pmcr_connections_accepted_total", "Client connections accepted");
  refused_ = &counter(r, "pmcr_connections_refused_total", "Client connections refused over --max-connections");
  auth_failed_ = &counter(r, "pmcr_authentication_failures_total", "Connections whose AUTH failed");
  pool_size_ = &gauge(r, "pmcr_pool_size_bytes", "Size of the pool");
  pool_used_ = &gauge(r, "pmcr_pool_used_bytes", "Bytes of the pool's data area in use");
  pool_free_ = &gauge(r, "pmcr_pool_free_bytes", "Bytes of the pool's data area free");
  regions_ = &gauge(r, "pmcr_regions", "Regions in the catalogue");
  versions_ = &gauge(r, "pmcr_sealed_versions", "Sealed versions held");
  quarantined_ = &gauge(r, "pmcr_quarantined_versions", "Versions found damaged, kept but never served");
  jobs_ = &gauge(r, "pmcr_jobs", "Jobs with at least one sealed version");
  connections_ = &gauge(r, "pmcr_connections", "Client connections served now");
  slots_ = &gauge(r, "pmcr_catalogue_slots", "Record slots of the catalogue");
  slots_used_ = &gauge(r, "pmcr_catalogue_slots_used", "Record slots of the catalogue in use");
  named_ = &gauge(r, "pmcr_named_regions", "Named regions held");
  job_versions_family_ = &BuildCounter()
                              .Name("pmcr_job_versions_sealed_total")
                              .Help("Versions sealed, by job (the first jobs seen; the rest as job=\"(other)\")")
                              .Register(r);
  job_bytes_family_ = &BuildCounter()
                           .Name("pmcr_job_sealed_bytes_total")
                           .Help("Bytes of the versions sealed, by job (the first jobs seen; the rest as job=\"(other)\")")
                           .Register(r);
  other_ = {&job_versions_family_->Add({{"job", "(other)"}}), &job_bytes_family_->Add({{"job", "(other)"}})};
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(to_string(listen), 2);
  } catch (const std::exception& e) {
    throw Error(PMCR_E_CONFIG, "cannot serve metrics at " + to_string(listen) + ": " + e.what() +
                                   " (is the port taken? --metrics HOST:PORT)");
  }
  exposer_->RegisterCollectable(registry_);
  const auto ports = exposer_->GetListeningPorts();
  if (ports.empty())
    throw Error(PMCR_E_CONFIG, "cannot serve metrics at " + to_string(listen) +
                                   ": the HTTP server listens on no port (give --metrics HOST:PORT with an address of "
                                   "this host)");
  port_ = static_cast<uint16_t>(ports.front());
}

void Metrics::replied(proto::Type type, double seconds, bool ok) {
  const auto t = static_cast<size_t>(type);
  if (t < requests_.size() && requests_[t]) requests_[t]->Observe(seconds);
  if (!ok) {
    failed_requests_->Increment();
    return;
  }
  if (type == proto::Type::Commit || type == proto::Type::RegionCommit) {
    commits_->Observe(seconds);
    regions_written_->Increment();
  } else if (type == proto::Type::Open) {
    regions_read_->Increment();
  }
}

void Metrics::sealed(const std::string& job, uint64_t bytes) {
  sealed_->Increment();
  auto it = jobs_seen_.find(job);
  if (it == jobs_seen_.end() && jobs_seen_.size() < max_jobs_)
    it = jobs_seen_.emplace(job, JobSeries{&job_versions_family_->Add({{"job", job}}),
                                           &job_bytes_family_->Add({{"job", job}})}).first;
  const JobSeries& s = it == jobs_seen_.end() ? other_ : it->second;
  s.versions->Increment();
  s.bytes->Increment(static_cast<double>(bytes));
}

void Metrics::refresh(uint64_t pool_size, const CatalogueStats& s, uint32_t connections, uint64_t data_in,
                      uint64_t data_out) {
  pool_size_->Set(static_cast<double>(pool_size));
  pool_used_->Set(static_cast<double>(s.used_bytes));
  pool_free_->Set(static_cast<double>(s.free_bytes));
  regions_->Set(s.regions);
  versions_->Set(s.sealed_versions);
  quarantined_->Set(s.quarantined_versions);
  jobs_->Set(s.jobs);
  connections_->Set(connections);
  slots_->Set(s.slots);
  slots_used_->Set(s.slots_used);
  named_->Set(s.named_regions);
  if (data_in > data_in_) bytes_in_->Increment(static_cast<double>(data_in - data_in_));
  if (data_out > data_out_) bytes_out_->Increment(static_cast<double>(data_out - data_out_));
  data_in_ = data_in;
  data_out_ = data_out;
}

}  // namespace pmcr::server
