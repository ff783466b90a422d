#include "fuzz_pool.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>

#include "catalogue.hpp"
#include "checksum.hpp"
#include "error.hpp"
#include "fault.hpp"

namespace pmcr::fuzz {
namespace {

using server::Catalogue;
using server::Pool;

constexpr uint64_t kPoolSize = server::kMinPoolSize;

// The data area's contents: a fixed function of the pool offset, so that
// regions written by sample_pools() verify in any copy of the pool.
uint8_t byte_at(uint64_t offset) { return static_cast<uint8_t>((offset * 0x9E3779B97F4A7C15ull) >> 57); }

std::string pool_path() {
  static const std::string path = "/dev/shm/pmcr-fuzz-pool-" + std::to_string(::getpid());
  static const bool cleanup = [] {
    std::atexit([] { ::unlink(path.c_str()); });
    return true;
  }();
  (void)cleanup;
  return path;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
    throw std::runtime_error("cannot write " + path);
  ::close(fd);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> bytes(kPoolSize);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::pread(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
    throw std::runtime_error("cannot read " + path);
  ::close(fd);
  return bytes;
}

// A fresh pool file whose data area holds byte_at(offset) everywhere.
std::vector<uint8_t> blank_pool() {
  static const std::vector<uint8_t> image = [] {
    spdlog::set_level(spdlog::level::off);
    ::unlink(pool_path().c_str());
    {
      Pool pool = Pool::open_or_create(pool_path(), kPoolSize);
      const auto* h = pool.header();
      for (uint64_t o = h->data_offset; o < h->data_offset + h->data_size; ++o) pool.base()[o] = byte_at(o);
      pool.persist(pool.base() + h->data_offset, h->data_size);
    }
    return read_file(pool_path());
  }();
  return image;
}

void write_region(Catalogue& cat, const std::string& job, uint64_t v, uint32_t rank, uint32_t id, uint64_t size,
                  uint64_t attempt) {
  const auto r = cat.create_region({job, v, rank, id}, size, 1, attempt);
  cat.commit_region(r.handle, size, checksum(cat.data(r.offset), size), 1);  // the data is byte_at()
}

std::string check(Catalogue& cat) {
  const auto s = cat.stats();
  if (s.used_bytes + s.free_bytes != s.data_size) return "used + free != data area";
  uint64_t listed = 0;
  std::map<std::string, std::vector<uint64_t>> jobs;
  for (const auto& v : cat.list_versions("")) {
    jobs[v.job].push_back(v.version);
    for (const auto& r : cat.list_regions(v.job, v.version).second) listed += server::extent_size(r.size);
    if (!v.sealed) continue;
    // What the server does before it serves a region (scrub.cpp): verify.
    for (const auto& r : cat.version_regions(v.job, v.version)) {
      if (r.offset + r.capacity > kPoolSize) return "an offered region lies outside the pool";
      if (checksum(cat.data(r.offset), r.size) != r.checksum) {
        cat.quarantine(v.job, v.version, cat.version_id(v.job, v.version), "fails its checksum");
        break;
      }
    }
  }
  if (listed + s.kept_bytes != s.used_bytes) return "used bytes differ from the extents of the listed regions";
  for (const auto& [job, versions] : jobs) cat.delete_versions(job, std::nullopt);
  if (cat.stats().used_bytes != 0 || cat.stats().regions != 0) return "space left after deleting every version";
  try {
    const uint64_t a = cat.begin_attempt("fuzz");
    write_region(cat, "fuzz", 1, 0, 0, 5000, a);
    cat.seal("fuzz", 1, 1, 1, a);
  } catch (const Error& e) {
    if (e.code() != PMCR_E_NOSPACE) return std::string("a new checkpoint failed: ") + e.what();
  }
  return "";
}

}  // namespace

size_t pool_head_size() { return server::kHeaderSize + 1024 * sizeof(server::Record); }

std::string check_pool(const uint8_t* data, size_t size) {
  std::vector<uint8_t> image = blank_pool();
  std::memcpy(image.data(), data, std::min(size, pool_head_size()));
  write_file(pool_path(), image);
  try {
    Pool pool = Pool::open_or_create(pool_path(), std::nullopt);
    Catalogue cat(pool);
    return check(cat);
  } catch (const Error&) {
    return "";  // refused with a clear error: fine
  } catch (const std::exception& e) {
    return std::string("recovery threw something else than pmcr::Error: ") + e.what();
  }
}

std::vector<std::pair<std::string, std::vector<uint8_t>>> sample_pools() {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  const auto make = [&](const std::string& name, const std::function<void(Catalogue&)>& build) {
    write_file(pool_path(), blank_pool());
    try {
      Pool pool = Pool::open_or_create(pool_path(), std::nullopt);
      Catalogue cat(pool);
      build(cat);
    } catch (const Error&) {  // an injected crash: the pool stays as it was left
    }
    fault::arm("", 0, false);
    auto image = read_file(pool_path());
    image.resize(pool_head_size());
    out.emplace_back(name, std::move(image));
  };
  const auto versions = [](Catalogue& cat, uint64_t a, int n) {
    for (int v = 1; v <= n; ++v) {
      for (uint32_t r = 0; r < 2; ++r) write_region(cat, "job", v, r, 0, 3000 + 5000 * r, a);
      write_region(cat, "job", v, 0, 1, 0, a);
      cat.seal("job", v, 2, 3, a);
    }
  };
  make("empty", [](Catalogue&) {});
  make("sealed", [&](Catalogue& cat) { versions(cat, cat.begin_attempt("job"), 3); });
  make("unsealed", [&](Catalogue& cat) {
    const uint64_t a = cat.begin_attempt("job");
    versions(cat, a, 1);
    write_region(cat, "job", 2, 0, 0, 9000, a);
    cat.create_region({"job", 2, 1, 0}, 100, 1, a);
  });
  make("deleted", [&](Catalogue& cat) {
    versions(cat, cat.begin_attempt("job"), 3);
    cat.delete_versions("job", 2);
  });
  make("quarantined", [&](Catalogue& cat) {
    versions(cat, cat.begin_attempt("job"), 2);
    cat.quarantine("job", 1, cat.version_id("job", 1), "fails its checksum");
  });
#ifdef PMCR_FAULT_INJECTION
  make("crash-mid-delete", [&](Catalogue& cat) {
    versions(cat, cat.begin_attempt("job"), 2);
    fault::arm("delete.region", 2, false);
    cat.delete_versions("job", 1);
  });
  make("crash-mid-seal", [&](Catalogue& cat) {
    const uint64_t a = cat.begin_attempt("job");
    versions(cat, a, 1);
    write_region(cat, "job", 2, 0, 0, 4000, a);
    fault::arm("seal.body", 1, false);
    cat.seal("job", 2, 1, 1, a);
  });
#endif
  return out;
}

}  // namespace pmcr::fuzz
