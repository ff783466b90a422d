#include "encryption.hpp"

#include <sodium.h>

#include <cstring>

#include "error.hpp"

namespace pmcr::crypt {
namespace {

constexpr uint32_t kMagic = 0x45434d50;  // bytes 'P' 'M' 'C' 'E'
constexpr uint16_t kFormat = 1;
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "pmcr-dat";
enum : uint64_t { kBlockSubkey = 1, kMacSubkey = 2, kIdSubkey = 3 };
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == 24 && crypto_aead_xchacha20poly1305_ietf_ABYTES == 16 &&
                  crypto_aead_aes256gcm_NPUBBYTES <= 24 && crypto_aead_aes256gcm_ABYTES == 16,
              "the block layout assumes these nonce and tag sizes");

void put_le(uint8_t* p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

uint64_t blocks_of(uint64_t plain) { return (plain + kBlockSize - 1) / kBlockSize; }

// The associated data of block INDEX of LENGTH bytes: its place.
std::vector<uint8_t> block_ad(const Binding& b, uint64_t index, uint64_t length) {
  static constexpr char kRole[] = "pmcr-block-1";
  std::vector<uint8_t> ad(kRole, kRole + sizeof kRole);
  uint8_t word[8];
  put_le(word, b.job.size(), 4);
  ad.insert(ad.end(), word, word + 4);
  ad.insert(ad.end(), b.job.begin(), b.job.end());
  put_le(word, b.rank, 4);
  ad.insert(ad.end(), word, word + 4);
  put_le(word, b.id, 4);
  ad.insert(ad.end(), word, word + 4);
  put_le(word, index, 8);
  ad.insert(ad.end(), word, word + 8);
  put_le(word, length, 8);
  ad.insert(ad.end(), word, word + 8);
  return ad;
}

// The trailer: HMAC over the header, the binding and every nonce and tag.
void trailer_mac(const std::array<uint8_t, 32>& key, const Binding& b, const uint8_t* region, uint64_t plain,
                 uint8_t out[kTrailerSize]) {
  static constexpr char kRole[] = "pmcr-region-1";
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const uint8_t*>(kRole), sizeof kRole);
  crypto_auth_hmacsha256_update(&st, region, kHeaderSize);
  uint8_t word[8];
  put_le(word, b.job.size(), 4);
  crypto_auth_hmacsha256_update(&st, word, 4);
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const uint8_t*>(b.job.data()), b.job.size());
  put_le(word, b.version, 8);
  crypto_auth_hmacsha256_update(&st, word, 8);
  put_le(word, b.rank, 4);
  crypto_auth_hmacsha256_update(&st, word, 4);
  put_le(word, b.id, 4);
  crypto_auth_hmacsha256_update(&st, word, 4);
  const uint8_t* p = region + kHeaderSize;
  for (uint64_t i = 0, n = blocks_of(plain); i < n; ++i) {
    const uint64_t len = std::min<uint64_t>(kBlockSize, plain - i * kBlockSize);
    crypto_auth_hmacsha256_update(&st, p, kBlockOverhead);
    p += kBlockOverhead + len;
  }
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

bool aes_available() {
  auth::init();
  static const bool yes = crypto_aead_aes256gcm_is_available() != 0;
  return yes;
}

}  // namespace

const char* cipher_name(Cipher c) {
  return c == Cipher::Aes256Gcm ? "AES-256-GCM" : "XChaCha20-Poly1305";
}

DataKey::DataKey(const auth::Key& key) {
  auth::init();
  crypto_kdf_derive_from_key(block_key_.data(), block_key_.size(), kBlockSubkey, kKdfContext, key.data());
  crypto_kdf_derive_from_key(mac_key_.data(), mac_key_.size(), kMacSubkey, kKdfContext, key.data());
  std::array<uint8_t, 32> id{};
  crypto_kdf_derive_from_key(id.data(), id.size(), kIdSubkey, kKdfContext, key.data());
  std::memcpy(id_.data(), id.data(), id_.size());
  cipher_ = aes_available() ? Cipher::Aes256Gcm : Cipher::XChaCha20Poly1305;
}

DataKey::~DataKey() {
  sodium_memzero(block_key_.data(), block_key_.size());
  sodium_memzero(mac_key_.data(), mac_key_.size());
}

DataKey DataKey::load(const std::string& path) { return DataKey(auth::read_key_file(path)); }

std::string DataKey::id_text() const {
  char hex[2 * 16 + 1];
  sodium_bin2hex(hex, sizeof hex, id_.data(), id_.size());
  return hex;
}

uint64_t encrypted_size(uint64_t plain) { return kHeaderSize + blocks_of(plain) * kBlockOverhead + plain + kTrailerSize; }

std::optional<uint64_t> plain_size(uint64_t size) {
  if (size < kHeaderSize + kTrailerSize) return std::nullopt;
  const uint64_t body = size - kHeaderSize - kTrailerSize;  // blocks * overhead + plain
  const uint64_t blocks = (body + kBlockSize + kBlockOverhead - 1) / (kBlockSize + kBlockOverhead);
  if (blocks * kBlockOverhead > body) return std::nullopt;
  const uint64_t plain = body - blocks * kBlockOverhead;
  if (blocks_of(plain) != blocks) return std::nullopt;
  return plain;
}

void encrypt(const DataKey& key, const Binding& b, const void* plain, uint64_t n, uint8_t* out) {
  std::memset(out, 0, kHeaderSize);
  put_le(out, kMagic, 4);
  put_le(out + 4, kFormat, 2);
  out[6] = static_cast<uint8_t>(key.cipher_);
  put_le(out + 8, kBlockSize, 4);
  put_le(out + 16, n, 8);
  std::memcpy(out + 24, key.id_.data(), key.id_.size());

  alignas(16) crypto_aead_aes256gcm_state aes;
  if (key.cipher_ == Cipher::Aes256Gcm) crypto_aead_aes256gcm_beforenm(&aes, key.block_key_.data());
  const auto* in = static_cast<const uint8_t*>(plain);
  uint8_t* p = out + kHeaderSize;
  for (uint64_t i = 0, blocks = blocks_of(n); i < blocks; ++i) {
    const uint64_t len = std::min<uint64_t>(kBlockSize, n - i * kBlockSize);
    uint8_t* nonce = p;
    uint8_t* tag = p + 24;
    uint8_t* cipher = p + kBlockOverhead;
    const auto ad = block_ad(b, i, len);
    if (key.cipher_ == Cipher::Aes256Gcm) {
      std::memset(nonce, 0, 24);
      randombytes_buf(nonce, crypto_aead_aes256gcm_NPUBBYTES);
      crypto_aead_aes256gcm_encrypt_detached_afternm(cipher, tag, nullptr, in + i * kBlockSize, len, ad.data(),
                                                     ad.size(), nullptr, nonce, &aes);
    } else {
      randombytes_buf(nonce, 24);
      crypto_aead_xchacha20poly1305_ietf_encrypt_detached(cipher, tag, nullptr, in + i * kBlockSize, len, ad.data(),
                                                          ad.size(), nullptr, nonce, key.block_key_.data());
    }
    p += kBlockOverhead + len;
  }
  sodium_memzero(&aes, sizeof aes);
  trailer_mac(key.mac_key_, b, out, n, p);
}

void decrypt(const DataKey& key, const Binding& b, const uint8_t* data, uint64_t size, void* out) {
  const std::string what = "region rank " + std::to_string(b.rank) + " id " + std::to_string(b.id) + " of version " +
                           std::to_string(b.version) + " of job '" + b.job + "'";
  const auto plain = plain_size(size);
  if (!plain || get_le(data, 4) != kMagic)
    throw Error(PMCR_E_CORRUPT, what + " is not an encrypted region (PMCR_ENCRYPT=1, but it was written without "
                                       "encryption, or it was altered)");
  if (get_le(data + 4, 2) != kFormat || get_le(data + 8, 4) != kBlockSize || get_le(data + 16, 8) != *plain)
    throw Error(PMCR_E_CORRUPT, what + " has an encryption header this version of pmcr does not write, or an altered one");
  if (sodium_memcmp(data + 24, key.id_.data(), key.id_.size()) != 0) {
    char hex[33];
    sodium_bin2hex(hex, sizeof hex, data + 24, 16);
    throw Error(PMCR_E_CONFIG, what + " was encrypted under another data key (key id " + hex + "; PMCR_DATA_KEY_FILE has " +
                                   key.id_text() + ")");
  }
  const auto cipher = static_cast<Cipher>(data[6]);
  if (cipher != Cipher::Aes256Gcm && cipher != Cipher::XChaCha20Poly1305)
    throw Error(PMCR_E_CORRUPT, what + " names an unknown cipher");
  if (cipher == Cipher::Aes256Gcm && !aes_available())
    throw Error(PMCR_E_CONFIG, what + " is encrypted with AES-256-GCM, which this CPU cannot run in libsodium (no AES-NI)");
  uint8_t mac[kTrailerSize];
  trailer_mac(key.mac_key_, b, data, *plain, mac);
  if (sodium_memcmp(mac, data + size - kTrailerSize, kTrailerSize) != 0)
    throw Error(PMCR_E_CORRUPT, what + " fails authentication: it was altered, or it belongs to another job, version, "
                                       "rank or id");
  alignas(16) crypto_aead_aes256gcm_state aes;
  if (cipher == Cipher::Aes256Gcm) crypto_aead_aes256gcm_beforenm(&aes, key.block_key_.data());
  auto* dst = static_cast<uint8_t*>(out);
  const uint8_t* p = data + kHeaderSize;
  for (uint64_t i = 0, blocks = blocks_of(*plain); i < blocks; ++i) {
    const uint64_t len = std::min<uint64_t>(kBlockSize, *plain - i * kBlockSize);
    const auto ad = block_ad(b, i, len);
    const int rc =
        cipher == Cipher::Aes256Gcm
            ? crypto_aead_aes256gcm_decrypt_detached_afternm(dst + i * kBlockSize, nullptr, p + kBlockOverhead, len,
                                                             p + 24, ad.data(), ad.size(), p, &aes)
            : crypto_aead_xchacha20poly1305_ietf_decrypt_detached(dst + i * kBlockSize, nullptr, p + kBlockOverhead, len,
                                                                  p + 24, ad.data(), ad.size(), p, key.block_key_.data());
    if (rc != 0) {
      sodium_memzero(&aes, sizeof aes);
      throw Error(PMCR_E_CORRUPT, what + ": block " + std::to_string(i) + " fails authentication (altered data)");
    }
    p += kBlockOverhead + len;
  }
  sodium_memzero(&aes, sizeof aes);
}

}  // namespace pmcr::crypt
