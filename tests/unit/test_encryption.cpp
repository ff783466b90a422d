// Client-side encryption of region data (client/encryption.hpp).
#include <gtest/gtest.h>

#include <set>

#include "code_of.hpp"
#include "encryption.hpp"
#include "error.hpp"
#include "random_bytes.hpp"

using namespace pmcr;
using pmcr::test::code_of;
using pmcr::test::random_bytes;

namespace {

const crypt::Binding kWhere{"heat2d", 7, 3, 1};

std::vector<uint8_t> sealed(const crypt::DataKey& k, const std::vector<uint8_t>& plain,
                            const crypt::Binding& where = kWhere) {
  std::vector<uint8_t> out(crypt::encrypted_size(plain.size()));
  crypt::encrypt(k, where, plain.data(), plain.size(), out.data());
  return out;
}

}  // namespace

TEST(Encryption, RoundTripsEverySizeAroundBlocks) {
  const crypt::DataKey k(auth::Key::generate());
  constexpr uint64_t B = crypt::kBlockSize;
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, B - 1, B, B + 1, 3 * B + 5}) {
    const auto plain = random_bytes(n, n);
    const auto s = sealed(k, plain);
    ASSERT_EQ(crypt::plain_size(s.size()), n);
    std::vector<uint8_t> back(n);
    crypt::decrypt(k, kWhere, s.data(), s.size(), back.data());
    EXPECT_EQ(back, plain) << n;
    if (n >= 64) {  // no plaintext shows through
      EXPECT_EQ(std::search(s.begin(), s.end(), plain.begin(), plain.begin() + 64), s.end()) << n;
    }
  }
}

TEST(Encryption, SizesInvertExactly) {
  for (uint64_t n = 0; n < 3 * crypt::kBlockSize + 100; n += 4099) {
    EXPECT_EQ(crypt::plain_size(crypt::encrypted_size(n)), n);
    EXPECT_NE(crypt::plain_size(crypt::encrypted_size(n) + 1), std::optional<uint64_t>(n));
  }
  EXPECT_FALSE(crypt::plain_size(0));
  EXPECT_FALSE(crypt::plain_size(95));
  EXPECT_EQ(crypt::plain_size(96), 0u);
  EXPECT_FALSE(crypt::plain_size(97)) << "a byte without its block's nonce and tag";
}

TEST(Encryption, EveryAlteredByteIsFound) {
  const crypt::DataKey k(auth::Key::generate());
  const auto plain = random_bytes(2 * crypt::kBlockSize + 10, 1);
  const auto s = sealed(k, plain);
  std::vector<uint8_t> out(plain.size());
  // The header, a nonce, a tag, ciphertext of each block, the trailer.
  for (uint64_t at : {uint64_t{20}, uint64_t{crypt::kHeaderSize + 3}, uint64_t{crypt::kHeaderSize + 30},
                      uint64_t{crypt::kHeaderSize + 40 + 999}, uint64_t{s.size() / 2}, uint64_t{s.size() - 40},
                      uint64_t{s.size() - 1}}) {
    auto bad = s;
    bad[at] ^= 0x01;
    EXPECT_EQ(code_of([&] { crypt::decrypt(k, kWhere, bad.data(), bad.size(), out.data()); }), PMCR_E_CORRUPT) << at;
  }
  // Cut short by a whole block's worth: not a valid size, or a failed MAC.
  EXPECT_NE(code_of([&] { crypt::decrypt(k, kWhere, s.data(), s.size() - crypt::kBlockSize, out.data()); }), 0);
}

TEST(Encryption, ARegionIsBoundToItsPlaceAndVersion) {
  const crypt::DataKey k(auth::Key::generate());
  const auto plain = random_bytes(crypt::kBlockSize + 10, 2);
  const auto s = sealed(k, plain);
  std::vector<uint8_t> out(plain.size());
  for (const crypt::Binding& other : {crypt::Binding{"other", 7, 3, 1}, crypt::Binding{"heat2d", 6, 3, 1},
                                      crypt::Binding{"heat2d", 7, 2, 1}, crypt::Binding{"heat2d", 7, 3, 2}})
    EXPECT_EQ(code_of([&] { crypt::decrypt(k, other, s.data(), s.size(), out.data()); }), PMCR_E_CORRUPT)
        << other.job << " " << other.version << " " << other.rank << " " << other.id;
  // A block brought back from an older version of the same region: every
  // block verifies on its own, the trailer does not.
  const auto older = sealed(k, random_bytes(plain.size(), 3), {"heat2d", 6, 3, 1});
  auto mixed = s;
  std::copy(older.begin() + crypt::kHeaderSize, older.begin() + crypt::kHeaderSize + crypt::kBlockOverhead + crypt::kBlockSize,
            mixed.begin() + crypt::kHeaderSize);
  EXPECT_EQ(code_of([&] { crypt::decrypt(k, kWhere, mixed.data(), mixed.size(), out.data()); }), PMCR_E_CORRUPT);
}

TEST(Encryption, AnotherKeyIsToldApartFromDamage) {
  const crypt::DataKey k(auth::Key::generate()), other(auth::Key::generate());
  EXPECT_NE(k.id_text(), other.id_text());
  const auto s = sealed(k, random_bytes(1000, 4));
  std::vector<uint8_t> out(1000);
  EXPECT_EQ(code_of([&] { crypt::decrypt(other, kWhere, s.data(), s.size(), out.data()); }), PMCR_E_CONFIG);
  const std::vector<uint8_t> clear = random_bytes(1000 + 96, 5);
  EXPECT_EQ(code_of([&] { crypt::decrypt(k, kWhere, clear.data(), clear.size(), out.data()); }), PMCR_E_CORRUPT)
      << "a region written without encryption";
}

TEST(Encryption, NoncesAreNeverReused) {
  const crypt::DataKey k(auth::Key::generate());
  const auto plain = random_bytes(4 * crypt::kBlockSize, 6);
  std::set<std::vector<uint8_t>> nonces;
  for (int i = 0; i < 4; ++i) {
    const auto s = sealed(k, plain);  // the same data, the same place, again
    for (uint64_t b = 0; b < 4; ++b) {
      const auto* n = s.data() + crypt::kHeaderSize + b * (crypt::kBlockOverhead + crypt::kBlockSize);
      EXPECT_TRUE(nonces.insert(std::vector<uint8_t>(n, n + 24)).second) << "a nonce came twice";
    }
  }
}
