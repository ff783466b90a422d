// pmserver --metrics HOST:PORT: Prometheus metrics (prometheus-cpp), served
// at http://HOST:PORT/metrics by the exposer's own threads. The event loop
// records into them (counters and histograms are atomic); the gauges of the
// pool and the catalogue are refreshed from the loop's housekeeping, once a
// second, so a scrape never touches the catalogue.
//
// Per-job series (sealed versions and their bytes) are bounded: the first
// MAX_JOBS jobs a server sees get a label of their own, the rest are
// counted together under job="(other)".
#pragma once

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "catalogue.hpp"
#include "protocol.hpp"
#include "text.hpp"

namespace pmcr::server {

class Metrics {
 public:
  // Listens at LISTEN (port 0: the kernel picks one; see port()). Throws
  // Error(PMCR_E_CONFIG) if it cannot.
  Metrics(const HostPort& listen, size_t max_jobs);
  uint16_t port() const { return port_; }

  // A reply to a request of TYPE, SECONDS after the request arrived; OK if
  // it succeeded. COMMITs also go to the commit histogram and count a
  // region written; OPENs count a region read.
  void replied(proto::Type type, double seconds, bool ok);
  void sealed(const std::string& job, uint64_t bytes);
  void connection_accepted() { accepted_->Increment(); }
  void connection_refused() { refused_->Increment(); }
  void authentication_failed() { auth_failed_->Increment(); }
  // The pool, the catalogue and the connections now; the totals of region
  // bytes received and sent since start.
  void refresh(uint64_t pool_size, const CatalogueStats& s, uint32_t connections, uint64_t data_in, uint64_t data_out);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint16_t port_ = 0;
  size_t max_jobs_;
  prometheus::Family<prometheus::Histogram>* request_family_;
  std::array<prometheus::Histogram*, proto::kLastType + 1> requests_{};
  prometheus::Histogram* commits_;
  prometheus::Counter *regions_written_, *regions_read_, *bytes_in_, *bytes_out_, *sealed_, *accepted_, *refused_,
      *auth_failed_, *failed_requests_;
  uint64_t data_in_ = 0, data_out_ = 0;  // what bytes_in_ and bytes_out_ were told so far
  prometheus::Gauge *pool_size_, *pool_used_, *pool_free_, *regions_, *versions_, *quarantined_, *jobs_,
      *connections_, *slots_, *slots_used_, *named_;
  prometheus::Family<prometheus::Counter>* job_versions_family_;
  prometheus::Family<prometheus::Counter>* job_bytes_family_;
  struct JobSeries {
    prometheus::Counter* versions;
    prometheus::Counter* bytes;
  };
  std::map<std::string, JobSeries> jobs_seen_;
  JobSeries other_{};
};

}  // namespace pmcr::server
