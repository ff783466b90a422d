/*
 * pmcr.hpp: a header-only C++ layer over pmcr.h.
 *
 *   pmcr::Session s(MPI_COMM_WORLD);          // pmcr_init; pmcr_finalize at scope exit
 *   s.protect(0, grid);                        // any contiguous container, or ptr + size
 *   if (auto v = s.restart_test()) s.restart(*v);
 *   s.checkpoint(step);
 *
 * Every failure throws pmcr::Error, which carries the PMCR_E_* code and the
 * library's message (pmcr_last_error()).
 */
#ifndef PMCR_PMCR_HPP
#define PMCR_PMCR_HPP

#include <pmcr/pmcr.h>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace pmcr {

class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// Throws Error if RC is a failure: "pmcr_strerror(rc): pmcr_last_error()".
inline void check(int rc) {
  if (rc != PMCR_OK) throw Error(rc, std::string(pmcr_strerror(rc)) + ": " + pmcr_last_error());
}

// pmcr_init in the constructor, pmcr_finalize in the destructor (whose
// failure cannot be reported there; call finalize() to see it).
class Session {
 public:
  explicit Session(MPI_Comm comm, const char* config_path = nullptr) { check(pmcr_init(comm, config_path)); }
  ~Session() {
    if (active_) pmcr_finalize();
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void protect(int id, void* ptr, std::size_t size) { check(pmcr_protect(id, ptr, size)); }
  // A trivially copyable object, or a contiguous container (data() and size()).
  template <class T>
  void protect(int id, T& object) {
    if constexpr (has_data<T>::value)
      protect(id, object.data(), object.size() * sizeof(*object.data()));
    else
      protect(id, &object, sizeof(T));
  }
  void unprotect(int id) { check(pmcr_unprotect(id)); }
  void checkpoint(int version) { check(pmcr_checkpoint(version)); }
  // Returns once VERSION is sealed (PMCR_ASYNC=1; at once otherwise).
  void wait(int version) { check(pmcr_wait(version)); }
  // The version to restart from, or nothing on a first run.
  std::optional<int> restart_test() {
    int v = -1;
    check(pmcr_restart_test(&v));
    return v < 0 ? std::nullopt : std::optional<int>(v);
  }
  std::size_t recover_size(int version, int id) {
    std::size_t n = 0;
    check(pmcr_recover_size(version, id, &n));
    return n;
  }
  void restart(int version) { check(pmcr_restart(version)); }
  void finalize() {
    if (!active_) return;
    active_ = false;
    check(pmcr_finalize());
  }

 private:
  template <class T, class = void>
  struct has_data : std::false_type {};
  template <class T>
  struct has_data<T, std::void_t<decltype(std::declval<T&>().data()), decltype(std::declval<T&>().size())>>
      : std::true_type {};

  bool active_ = true;
};

}  // namespace pmcr

#endif /* PMCR_PMCR_HPP */
