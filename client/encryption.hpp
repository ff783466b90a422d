// Encryption: region data encrypted and authenticated on the client
// (PMCR_ENCRYPT=1), so that neither the network nor the storage node can
// read or silently alter a checkpoint. The key (PMCR_DATA_KEY_FILE, a
// `pmcr keygen` file) never leaves the job's side. The only file of pmcr
// that encrypts region data.
//
// A region is stored as
//
//   header   64 bytes: u32 magic "PMCE" | u16 format (1) | u8 cipher | u8 0 |
//            u32 block size | u32 0 | u64 plaintext size | key id[16] | 0[24]
//   blocks   per block of plaintext (the last may be short):
//            nonce[24] | tag[16] | ciphertext (the block's length)
//   trailer  32 bytes: HMAC-SHA-256 over the header, the region's binding
//            (job, version, rank, id) and every block's nonce and tag
//
// Blocks are sealed one by one with an AEAD (XChaCha20-Poly1305 or, where
// the CPU has AES-NI, AES-256-GCM) under a fresh random nonce each, with the
// block's place (job, rank, id, block number, block length) as associated
// data: a block moved to another place fails. Nothing in a block depends on
// the version or on the other blocks, so a later generation of the region
// can keep an unchanged block as it is (incremental checkpoints: only
// changed blocks are encrypted and sent again). The trailer binds the
// version and the whole set of blocks: a block, or a whole region, brought
// back from an older version, or a region cut short, fails.
//
// Subkeys of the data key (crypto_kdf): one encrypts blocks, one MACs the
// trailer, one names the key (its id in the header: a wrong key is told
// apart from altered data).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "auth.hpp"

namespace pmcr::crypt {

constexpr uint32_t kBlockSize = 1u << 20;
constexpr uint64_t kHeaderSize = 64;
constexpr uint64_t kBlockOverhead = 24 + 16;  // nonce + tag
constexpr uint64_t kTrailerSize = 32;

enum class Cipher : uint8_t { XChaCha20Poly1305 = 1, Aes256Gcm = 2 };
const char* cipher_name(Cipher c);

// Where a region belongs.
struct Binding {
  std::string job;
  uint64_t version = 0;
  uint32_t rank = 0;
  uint32_t id = 0;
};

class DataKey {
 public:
  // Reads a key file (auth::read_key_file: mode 0600). Throws Error(CONFIG).
  static DataKey load(const std::string& path);
  explicit DataKey(const auth::Key& key);
  ~DataKey();
  DataKey(const DataKey&) = default;
  DataKey& operator=(const DataKey&) = default;
  const std::array<uint8_t, 16>& id() const { return id_; }
  std::string id_text() const;  // hex, for messages
  // The cipher new regions are encrypted with (AES-256-GCM with AES-NI).
  Cipher cipher() const { return cipher_; }

 private:
  friend void encrypt(const DataKey&, const Binding&, const void*, uint64_t, uint8_t*);
  friend void decrypt(const DataKey&, const Binding&, const uint8_t*, uint64_t, void*);
  std::array<uint8_t, 32> block_key_{}, mac_key_{};
  std::array<uint8_t, 16> id_{};
  Cipher cipher_ = Cipher::XChaCha20Poly1305;
};

// Bytes a region of PLAIN bytes takes encrypted.
uint64_t encrypted_size(uint64_t plain);
// The plaintext size of an encrypted region of SIZE bytes; nothing if no
// plaintext size encrypts to SIZE.
std::optional<uint64_t> plain_size(uint64_t size);

// Encrypts N bytes of PLAIN for BINDING into OUT (encrypted_size(N) bytes).
void encrypt(const DataKey& key, const Binding& binding, const void* plain, uint64_t n, uint8_t* out);
// Authenticates and decrypts SIZE bytes of DATA, encrypted for BINDING,
// into OUT (plain_size(SIZE) bytes). Throws Error: CONFIG (encrypted under
// another key, or with a cipher this CPU lacks), CORRUPT (not an encrypted
// region, altered, or not BINDING's: another job, version, rank or id).
// On failure OUT may hold decrypted blocks that are not to be trusted.
void decrypt(const DataKey& key, const Binding& binding, const uint8_t* data, uint64_t size, void* out);

}  // namespace pmcr::crypt
