// Grants: one connection's address-protection table. Every region handle a
// connection was given (CREATE: write until COMMIT; OPEN: read until
// CLOSE), with the pool extent it translates to. Every request and every
// piece of region data that names a handle is checked here first: a handle
// is worth nothing on any other connection, and bytes never land outside
// the region they name.
//
// On connections that may use RMA (transports whose NIC enforces remote
// keys), each grant has its own registration of the region's memory and
// its own remote key, unmapped when the grant ends: at COMMIT, CLOSE, when
// the region is deleted or reclaimed (its extent freed), or when the
// connection goes. Elsewhere no remote key is ever handed out
// (Server::rkeys_enforced).
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <map>
#include <vector>

#include "catalogue.hpp"

namespace pmcr::server {

class Grants {
 public:
  enum class Right : uint8_t { Write, Read };
  struct Entry {
    RegionView region;
    Right right = Right::Read;
    uint32_t opens = 0;  // reads: a region opened twice is closed twice
    ucp_mem_h memh = nullptr;   // RMA only: this grant's own registration
    std::vector<uint8_t> rkey;  // RMA only: its packed remote key
  };

  // CONTEXT registers memory for RMA grants; RMA says this connection may
  // use put/get (else no grant ever has a remote key).
  Grants(ucp_context_h context, uint8_t* pool_base, bool rma) : context_(context), base_(pool_base), rma_(rma) {}
  ~Grants();
  Grants(const Grants&) = delete;
  Grants& operator=(const Grants&) = delete;
  void set_rma(bool rma) { rma_ = rma; }

  // A write grant of a new region (CREATE), replacing any of its handle.
  const Entry& allow_write(const RegionView& region);
  // One more read grant of an open region (OPEN).
  const Entry& allow_read(const RegionView& region);
  // Ends one read grant (CLOSE). False if this connection holds none.
  bool end_read(uint64_t handle);
  // Ends the grant of HANDLE whatever it is (COMMIT).
  void revoke(uint64_t handle);
  // Ends every grant into the extent at OFFSET (deleted or reclaimed).
  void revoke_extent(uint64_t offset);

  bool holds(uint64_t handle, Right right) const;
  // The grant of HANDLE for RIGHT, if [OFFSET, OFFSET + LENGTH) lies in its
  // region. Throws NOT_FOUND (no such grant on this connection), PERM (the
  // other right: written regions are not read, read ones not written),
  // INVAL (outside the region).
  const Entry& check(uint64_t handle, Right right, uint64_t offset, uint64_t length) const;

  uint32_t reads() const { return reads_; }
  // Every read grant, once per open (teardown).
  std::vector<uint64_t> read_handles() const;

 private:
  void register_rkey(Entry& e);
  void unregister(Entry& e);

  ucp_context_h context_;
  uint8_t* base_;
  bool rma_;
  std::map<uint64_t, Entry> entries_;  // by handle
  uint32_t reads_ = 0;
};

}  // namespace pmcr::server
