#include "grants.hpp"

#include <spdlog/spdlog.h>

#include "error.hpp"
#include "ucx.hpp"

namespace pmcr::server {

Grants::~Grants() {
  for (auto& [handle, e] : entries_) unregister(e);
}

void Grants::register_rkey(Entry& e) {
  if (!rma_ || e.region.capacity == 0) return;
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_PROT;
  mp.address = base_ + e.region.offset;
  mp.length = e.region.capacity;
  // A read grant's key reads; only a write grant's key may also write.
  mp.prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE | UCP_MEM_MAP_PROT_REMOTE_READ |
            (e.right == Right::Write ? UCP_MEM_MAP_PROT_REMOTE_WRITE : 0);
  ucs_status_t st = ucp_mem_map(context_, &mp, &e.memh);
  if (st != UCS_OK) ucx::throw_status("registering region memory for a remote key", st);
  void* packed = nullptr;
  size_t packed_size = 0;
  st = ucp_rkey_pack(context_, e.memh, &packed, &packed_size);
  if (st != UCS_OK) {
    unregister(e);
    ucx::throw_status("packing a remote key", st);
  }
  e.rkey.assign(static_cast<uint8_t*>(packed), static_cast<uint8_t*>(packed) + packed_size);
  ucp_rkey_buffer_release(packed);
}

void Grants::unregister(Entry& e) {
  if (!e.memh) return;
  // On an RDMA NIC this deregisters the memory: the remote key stops working.
  const ucs_status_t st = ucp_mem_unmap(context_, e.memh);
  if (st != UCS_OK) spdlog::warn("revoking a remote key: {}", ucs_status_string(st));
  e.memh = nullptr;
  e.rkey.clear();
}

const Grants::Entry& Grants::allow_write(const RegionView& region) {
  revoke(region.handle);
  Entry e;
  e.region = region;
  e.right = Right::Write;
  register_rkey(e);
  return entries_.emplace(region.handle, std::move(e)).first->second;
}

const Grants::Entry& Grants::allow_read(const RegionView& region) {
  auto it = entries_.find(region.handle);
  if (it != entries_.end() && it->second.right != Right::Read) {
    revoke(region.handle);
    it = entries_.end();
  }
  if (it == entries_.end()) {
    Entry e;
    e.region = region;
    e.right = Right::Read;
    register_rkey(e);
    it = entries_.emplace(region.handle, std::move(e)).first;
  }
  it->second.opens++;
  reads_++;
  return it->second;
}

bool Grants::end_read(uint64_t handle) {
  auto it = entries_.find(handle);
  if (it == entries_.end() || it->second.right != Right::Read) return false;
  reads_--;
  if (--it->second.opens == 0) {
    unregister(it->second);
    entries_.erase(it);
  }
  return true;
}

void Grants::revoke(uint64_t handle) {
  auto it = entries_.find(handle);
  if (it == entries_.end()) return;
  if (it->second.right == Right::Read) reads_ -= it->second.opens;
  unregister(it->second);
  entries_.erase(it);
}

void Grants::revoke_extent(uint64_t offset) {
  for (auto& [handle, e] : entries_)
    if (e.region.offset == offset && e.region.capacity) unregister(e);  // the grant stays; its key no longer works
}

bool Grants::holds(uint64_t handle, Right right) const {
  auto it = entries_.find(handle);
  return it != entries_.end() && it->second.right == right;
}

const Grants::Entry& Grants::check(uint64_t handle, Right right, uint64_t offset, uint64_t length) const {
  auto it = entries_.find(handle);
  if (it == entries_.end())
    throw Error(PMCR_E_NOT_FOUND, std::string("this connection holds no region with that handle (handles are valid "
                                              "only on the connection they were given to)"));
  const Entry& e = it->second;
  if (e.right != right)
    throw Error(PMCR_E_PERM, right == Right::Write ? "that region is open for reading only"
                                                   : "that region is being written: it cannot be read before its seal");
  if (offset > e.region.size || length > e.region.size - offset)
    throw Error(PMCR_E_INVAL, std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                                  " are outside the region's " + std::to_string(e.region.size) + " bytes");
  return e;
}

std::vector<uint64_t> Grants::read_handles() const {
  std::vector<uint64_t> out;
  for (const auto& [handle, e] : entries_)
    if (e.right == Right::Read) out.insert(out.end(), e.opens, handle);
  return out;
}

}  // namespace pmcr::server
