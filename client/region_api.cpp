// The extern "C" layer of libpmcr-region: the region API of region.h over
// the client core, and the error functions every pmcr library shares
// (libpmcr.so records its own failures here through
// pmcr_private_set_last_error, so pmcr_last_error sees both APIs).
#include <pmcr/region.h>

#include <memory>
#include <string>

#include "capture.hpp"
#include "client.hpp"
#include "config.hpp"
#include "log.hpp"

struct pmcr_client {
  std::unique_ptr<pmcr::client::Client> client;
  pmcr::Config config;
  uint32_t regions = 0;  // open handles
};

struct pmcr_region {
  pmcr_client* owner = nullptr;
  uint64_t handle = 0;
  bool writer = false;
  uint64_t block_size = 0;
  uint64_t size = 0;  // writer: of the next generation so far
  std::string what;   // "region 'NAME' of job 'JOB'", for messages
};

namespace {

thread_local std::string t_last_error;

template <class F>
int guard(const char* fn, F&& f) noexcept {
  std::string message;
  const int rc = pmcr::capture(f, &message);
  if (rc != PMCR_OK) t_last_error = std::string(fn) + ": " + message;
  return rc;
}

void need(const void* p, const char* what) {
  if (!p) throw pmcr::Error(PMCR_E_INVAL, std::string(what) + " is NULL");
}

void need_writer(const pmcr_region* r) {
  need(r, "the region");
  if (!r->writer)
    throw pmcr::Error(PMCR_E_PERM, r->what + " is open for reading (pmcr_region_open): only a handle from "
                                             "pmcr_region_create writes, appends, clears or commits");
}

pmcr_region* open_region(pmcr_client* c, const char* job, const char* name, bool writer) {
  need(c, "the client");
  need(job, "the job");
  need(name, "the name");
  const auto reply = writer ? c->client->region_create(job, name, c->config.block_size, c->config.generations)
                            : c->client->region_open(job, name);
  auto r = std::make_unique<pmcr_region>();
  r->owner = c;
  r->handle = reply.handle;
  r->writer = writer;
  r->block_size = reply.block_size;
  r->size = reply.size;
  r->what = std::string("region '") + name + "' of job '" + job + "'";
  c->regions++;
  return r.release();
}

}  // namespace

extern "C" {

PMCR_EXPORT int pmcr_connect(const char* server, pmcr_client** client) {
  return guard("pmcr_connect", [&] {
    need(client, "client");
    auto c = std::make_unique<pmcr_client>();
    c->config = pmcr::load_config(nullptr, false);
    if (!c->config.log_level.empty()) pmcr::set_log_level(c->config.log_level);
    pmcr::client::Options o;
    o.server = server && *server ? server : c->config.servers.front();
    o.name = "pmcr-region";
    o.timeout = c->config.timeout;
    o.connect_timeout = c->config.connect_timeout;
    o.credential = c->config.credential;  // named regions always move by active messages
    c->client = std::make_unique<pmcr::client::Client>(o);
    *client = c.release();
  });
}

PMCR_EXPORT int pmcr_disconnect(pmcr_client* client) {
  return guard("pmcr_disconnect", [&] {
    if (!client) return;
    if (client->regions)
      throw pmcr::Error(PMCR_E_BUSY, std::to_string(client->regions) +
                                         " regions are still open on this connection: pmcr_region_close them first");
    delete client;
  });
}

PMCR_EXPORT int pmcr_region_create(pmcr_client* c, const char* job, const char* name, pmcr_region** r) {
  return guard("pmcr_region_create", [&] {
    need(r, "the region pointer");
    *r = open_region(c, job, name, true);
  });
}

PMCR_EXPORT int pmcr_region_open(pmcr_client* c, const char* job, const char* name, pmcr_region** r) {
  return guard("pmcr_region_open", [&] {
    need(r, "the region pointer");
    *r = open_region(c, job, name, false);
  });
}

PMCR_EXPORT int pmcr_region_write(pmcr_region* r, uint64_t offset, const void* buf, size_t len) {
  return guard("pmcr_region_write", [&] {
    need_writer(r);
    if (len) need(buf, "the buffer");
    if (offset > r->size)
      throw pmcr::Error(PMCR_E_RANGE, "a write at offset " + std::to_string(offset) + " is past the end of " + r->what +
                                          " (" + std::to_string(r->size) + " bytes): regions have no holes; append "
                                          "(pmcr_region_append) or write at most at the end");
    r->owner->client->region_write(r->handle, r->block_size, offset, buf, len);
    r->size = std::max<uint64_t>(r->size, offset + len);
  });
}

PMCR_EXPORT int pmcr_region_append(pmcr_region* r, const void* buf, size_t len) {
  return guard("pmcr_region_append", [&] {
    need_writer(r);
    if (len) need(buf, "the buffer");
    r->owner->client->region_write(r->handle, r->block_size, r->size, buf, len);
    r->size += len;
  });
}

PMCR_EXPORT int pmcr_region_clear(pmcr_region* r) {
  return guard("pmcr_region_clear", [&] {
    need_writer(r);
    r->owner->client->region_clear(r->handle);
    r->size = 0;
  });
}

PMCR_EXPORT int pmcr_region_commit(pmcr_region* r, uint64_t* generation) {
  return guard("pmcr_region_commit", [&] {
    need_writer(r);
    const auto reply = r->owner->client->region_commit(r->handle, r->size);
    if (generation) *generation = reply.generation;
  });
}

PMCR_EXPORT int pmcr_region_stat(pmcr_region* r, uint64_t* generation, uint64_t* size) {
  return guard("pmcr_region_stat", [&] {
    need(r, "the region");
    const auto reply = r->owner->client->region_stat(r->handle);
    if (generation) *generation = reply.generation;
    if (size) *size = reply.size;
  });
}

PMCR_EXPORT int pmcr_region_read(pmcr_region* r, uint64_t generation, uint64_t offset, void* buf, size_t len) {
  return guard("pmcr_region_read", [&] {
    need(r, "the region");
    if (len) need(buf, "the buffer");
    r->owner->client->region_read(r->handle, r->block_size, generation, offset, buf, len);
  });
}

PMCR_EXPORT int pmcr_region_changed(pmcr_region* r, uint64_t since, uint64_t generation, pmcr_range* ranges,
                                    size_t* count) {
  return guard("pmcr_region_changed", [&] {
    need(r, "the region");
    need(count, "count");
    if (*count) need(ranges, "the ranges array");
    const auto got = r->owner->client->region_changed(r->handle, since, generation);
    if (got.size() > *count) {
      const size_t capacity = *count;
      *count = got.size();  // the one output written on failure: how many are needed
      throw pmcr::Error(PMCR_E_RANGE, std::to_string(got.size()) + " ranges changed, the array holds " +
                                          std::to_string(capacity) + ": call again with *count ranges");
    }
    for (size_t i = 0; i < got.size(); ++i) ranges[i] = pmcr_range{got[i].offset, got[i].length};
    *count = got.size();
  });
}

PMCR_EXPORT int pmcr_region_close(pmcr_region* r) {
  return guard("pmcr_region_close", [&] {
    if (!r) return;
    std::unique_ptr<pmcr_region> owned(r);
    r->owner->regions--;
    r->owner->client->region_close(r->handle);
  });
}

PMCR_EXPORT int pmcr_region_remove(pmcr_client* c, const char* job, const char* name) {
  return guard("pmcr_region_remove", [&] {
    need(c, "the client");
    need(job, "the job");
    need(name, "the name");
    c->client->region_remove(job, name);
  });
}

PMCR_EXPORT const char* pmcr_strerror(int err) { return pmcr::error_name(err); }

PMCR_EXPORT const char* pmcr_last_error(void) { return t_last_error.c_str(); }

PMCR_EXPORT const char* pmcr_version(void) { return PMCR_VERSION; }

// libpmcr.so's failures, for pmcr_last_error (not in any public header).
PMCR_EXPORT void pmcr_private_set_last_error(const char* text) { t_last_error = text ? text : ""; }

}  // extern "C"
