// The reference model of a named region's generations, shared by the region
// tests and their writer process: generation g is made from generation g-1
// by changes that depend on g alone (a few overwrites at random offsets,
// unaligned and straddling blocks, appends, empty writes, now and then a
// clear), so any process can tell what every generation must hold.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace pmcr::test {

struct RegionOp {
  enum Kind { Write, Append, Clear } kind = Write;
  uint64_t offset = 0;  // Write
  std::vector<uint8_t> bytes;
};

// The changes that make generation G from a region of SIZE bytes.
inline std::vector<RegionOp> generation_ops(uint64_t g, uint64_t size, uint64_t block) {
  std::mt19937_64 rng(g * 0x9e3779b97f4a7c15ull + 17);
  std::vector<RegionOp> ops;
  const auto bytes = [&](uint64_t n) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  if (g > 1 && rng() % 8 == 0) {
    ops.push_back({RegionOp::Clear, 0, {}});
    size = 0;
  }
  const int n = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < n; ++k) {
    const uint64_t len = rng() % 5 == 0 ? 0 : rng() % (2 * block + 1);
    if (rng() % 3 == 0 || size == 0) {
      if (size + len > 48 * block) continue;  // bounded
      ops.push_back({RegionOp::Append, size, bytes(len)});
      size += len;
    } else {
      const uint64_t off = rng() % (size + 1);
      ops.push_back({RegionOp::Write, off, bytes(len)});
      size = std::max(size, off + len);
    }
  }
  return ops;
}

inline void apply(std::vector<uint8_t>& content, const RegionOp& op) {
  if (op.kind == RegionOp::Clear) {
    content.clear();
    return;
  }
  const uint64_t at = op.kind == RegionOp::Append ? content.size() : op.offset;
  if (content.size() < at + op.bytes.size()) content.resize(at + op.bytes.size());
  std::copy(op.bytes.begin(), op.bytes.end(), content.begin() + static_cast<std::ptrdiff_t>(at));
}

// What generation G holds (0: nothing).
inline std::vector<uint8_t> content_of(uint64_t g, uint64_t block) {
  std::vector<uint8_t> c;
  for (uint64_t i = 1; i <= g; ++i)
    for (const auto& op : generation_ops(i, c.size(), block)) apply(c, op);
  return c;
}

}  // namespace pmcr::test
