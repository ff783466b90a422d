#include "dirty.hpp"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "error.hpp"

namespace pmcr::client {
namespace {

// The PAGEMAP_SCAN interface (linux/fs.h of Linux 6.7; this system's
// headers may predate it).
struct PageRegion {
  uint64_t start, end, categories;
};
struct PmScanArg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr uint64_t kScanWpMatching = 1 << 0, kScanCheckWpAsync = 1 << 1;
constexpr uint64_t kPageWritten = 1 << 1, kPagePresent = 1 << 3, kPageSwapped = 1 << 4;
constexpr uint64_t kUffdWpUnpopulated = 1 << 13, kUffdWpAsync = 1 << 15;
// pagemap entry bits (soft-dirty).
constexpr uint64_t kPmPresent = 1ull << 63, kPmSwapped = 1ull << 62, kPmSoftDirty = 1ull << 55;

size_t page_size() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

[[noreturn]] void fail(const std::string& what) {
  throw Error(PMCR_E_IO, what + ": " + std::strerror(errno) + " (write tracking, PMCR_TRACK_WRITES=1)");
}

int open_uffd() {
  const int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) return -1;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kUffdWpAsync | kUffdWpUnpopulated;
  if (::ioctl(fd, UFFDIO_API, &api) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool uffd_register(int uffd, uintptr_t begin, uintptr_t end) {
  uffdio_register reg{};
  reg.range = {begin, end - begin};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (::ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return false;
  uffdio_writeprotect wp{};
  wp.range = {begin, end - begin};
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  return ::ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0;
}

// Pages of [begin, end) in CATEGORIES (or, INVERTED, not in them); with
// WP, the written ones are protected again. Adds each page range to OUT.
void scan(int pagemap, uintptr_t begin, uintptr_t end, uint64_t flags, uint64_t mask, uint64_t inverted,
          std::vector<std::pair<uintptr_t, uintptr_t>>& out) {
  std::vector<PageRegion> regions(256);
  uintptr_t at = begin;
  while (at < end) {
    PmScanArg a{};
    a.size = sizeof a;
    a.flags = flags;
    a.start = at;
    a.end = end;
    a.vec = reinterpret_cast<uintptr_t>(regions.data());
    a.vec_len = regions.size();
    a.category_mask = mask;
    a.category_inverted = inverted;
    a.return_mask = mask;
    const long n = ::ioctl(pagemap, kPagemapScan, &a);
    if (n < 0) fail("PAGEMAP_SCAN of /proc/self/pagemap");
    for (long i = 0; i < n; ++i) out.emplace_back(regions[i].start, regions[i].end);
    if (a.walk_end <= at) break;
    at = a.walk_end;
  }
}

bool soft_dirty_works(int pagemap) {
  const size_t page = page_size();
  void* p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  auto* bytes = static_cast<volatile uint8_t*>(p);
  bytes[0] = 1;
  bytes[page] = 1;
  const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, "4", 1) == 1;
  if (fd >= 0) ::close(fd);
  uint64_t e[2] = {};
  const off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / page * sizeof(uint64_t));
  ok = ok && ::pread(pagemap, e, sizeof e, at) == sizeof e && !(e[0] & kPmSoftDirty);
  bytes[0] = 2;
  ok = ok && ::pread(pagemap, e, sizeof e, at) == sizeof e && (e[0] & kPmSoftDirty) && !(e[1] & kPmSoftDirty);
  ::munmap(p, 2 * page);
  return ok;
}

bool uffd_wp_works(int pagemap) {
  const int uffd = open_uffd();
  if (uffd < 0) return false;
  const size_t page = page_size();
  void* p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool ok = p != MAP_FAILED;
  if (ok) {
    const auto b = reinterpret_cast<uintptr_t>(p);
    std::memset(p, 1, 2 * page);
    ok = uffd_register(uffd, b, b + 2 * page);
    static_cast<volatile uint8_t*>(p)[page] = 2;
    std::vector<std::pair<uintptr_t, uintptr_t>> written;
    try {
      if (ok) scan(pagemap, b, b + 2 * page, kScanWpMatching | kScanCheckWpAsync, kPageWritten, 0, written);
    } catch (const Error&) {
      ok = false;
    }
    ok = ok && written.size() == 1 && written[0].first == b + page && written[0].second == b + 2 * page;
    ::munmap(p, 2 * page);
  }
  ::close(uffd);
  return ok;
}

}  // namespace

std::string WriteTracker::mechanism() {
  static const std::string name = [] {
    const int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) return std::string();
    const std::string n = uffd_wp_works(pagemap) ? "uffd-wp" : soft_dirty_works(pagemap) ? "soft-dirty" : "";
    ::close(pagemap);
    return n;
  }();
  return name;
}

WriteTracker::WriteTracker() : name_(mechanism()) {
  if (name_.empty())
    throw Error(PMCR_E_CONFIG, "PMCR_TRACK_WRITES=1: this kernel tracks writes neither with userfaultfd's asynchronous "
                               "write-protection (Linux 6.7 and later) nor with soft-dirty pages "
                               "(CONFIG_MEM_SOFT_DIRTY); unset PMCR_TRACK_WRITES");
  pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pagemap_ < 0) fail("cannot open /proc/self/pagemap");
  if (name_ == "uffd-wp" && (uffd_ = open_uffd()) < 0) {
    ::close(pagemap_);
    fail("cannot open a userfaultfd");
  }
}

WriteTracker::~WriteTracker() {
  if (uffd_ >= 0) ::close(uffd_);  // ends every registration
  if (pagemap_ >= 0) ::close(pagemap_);
}

bool WriteTracker::track(const Range& range) {
  const void* ptr = range.ptr;
  const size_t size = range.size;
  if (size == 0) return true;
  const size_t page = page_size();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(ptr) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(ptr) + size + page - 1) / page * page;
  if (name_ == "soft-dirty") return true;  // every page is tracked (cleared by take())
  for (const auto& [b, e] : tracked_)
    if (b <= begin && end <= e) return true;
  if (!uffd_register(uffd_, begin, end)) return false;
  tracked_.emplace_back(begin, end);
  return true;
}

std::vector<std::vector<bool>> WriteTracker::take(const std::vector<Range>& ranges, size_t block_size) {
  const size_t page = page_size();
  std::vector<std::vector<bool>> out;
  for (const Range& r : ranges) {
    const auto base = reinterpret_cast<uintptr_t>(r.ptr);
    std::vector<bool> blocks((r.size + block_size - 1) / block_size, false);
    if (r.size == 0) {
      out.push_back(std::move(blocks));
      continue;
    }
    const uintptr_t begin = base / page * page, end = (base + r.size + page - 1) / page * page;
    // Written pages, and pages that are gone (their bytes are zeros now).
    std::vector<std::pair<uintptr_t, uintptr_t>> marked;
    if (name_ == "uffd-wp") {
      scan(pagemap_, begin, end, kScanWpMatching | kScanCheckWpAsync, kPageWritten, 0, marked);
      scan(pagemap_, begin, end, 0, kPagePresent | kPageSwapped, kPagePresent | kPageSwapped, marked);
    } else {
      std::vector<uint64_t> e((end - begin) / page);
      const auto want = static_cast<ssize_t>(e.size() * sizeof(uint64_t));
      if (::pread(pagemap_, e.data(), e.size() * sizeof(uint64_t), static_cast<off_t>(begin / page * sizeof(uint64_t))) !=
          want)
        fail("cannot read /proc/self/pagemap");
      for (size_t i = 0; i < e.size(); ++i)
        if (!(e[i] & kPmPresent) || (e[i] & (kPmSwapped | kPmSoftDirty)))
          marked.emplace_back(begin + i * page, begin + (i + 1) * page);
    }
    for (const auto& [b, e] : marked) {
      const uintptr_t lo = std::max(b, base), hi = std::min(e, base + r.size);
      if (lo >= hi) continue;
      for (size_t i = (lo - base) / block_size; i <= (hi - 1 - base) / block_size; ++i) blocks[i] = true;
    }
    out.push_back(std::move(blocks));
  }
  if (name_ == "soft-dirty") {  // one clear for the whole process, once every range was read
    const int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && ::write(fd, "4", 1) == 1;
    if (fd >= 0) ::close(fd);
    if (!ok) fail("cannot clear the soft-dirty bits");
  }
  return out;
}

}  // namespace pmcr::client
