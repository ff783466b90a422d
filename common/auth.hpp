// Authentication material both sides share: secret keys and their files,
// the transcript a connection's proofs cover, the key-mode proofs, and the
// pool header's MAC. Every primitive is libsodium's (HMAC-SHA-256, BLAKE2b
// key derivation, its CSPRNG); nothing here is home-made cryptography.
//
// A key file holds one line, "pmcr-key-1 " and 64 hex digits (32 random
// bytes), and must be a regular file of mode 0600 or stricter: any other is
// refused, naming the file and the chmod that fixes it.
//
// Both sides derive one subkey per purpose from a key (crypto_kdf), so a
// MAC made for one purpose is never valid for another.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace pmcr::auth {

constexpr size_t kKeySize = 32;
constexpr size_t kMacSize = 32;
using Mac = std::array<uint8_t, kMacSize>;

// Initialises libsodium (once; thread-safe). Throws Error(INTERNAL) if it cannot.
void init();

// Fresh random bytes from libsodium's CSPRNG.
void random_bytes(void* out, size_t n);
proto::Nonce make_nonce();

// A secret key: zeroed when destroyed.
class Key {
 public:
  Key() = default;
  ~Key();
  Key(const Key& other) = default;
  Key& operator=(const Key& other) = default;
  static Key generate();
  // From the text of a key file; throws Error(CONFIG) naming ORIGIN.
  static Key parse(const std::string& text, const std::string& origin);
  std::string text() const;  // the key file's line
  const uint8_t* data() const { return bytes_.data(); }
  bool operator==(const Key& other) const;

 private:
  std::array<uint8_t, kKeySize> bytes_{};
};

// Reads a key file. Throws Error(CONFIG): missing, unreadable, not a regular
// file, readable or writable by group or others ("chmod 600 PATH"), or not
// a pmcr key.
Key read_key_file(const std::string& path);
// Writes KEY to a new file PATH with mode 0600 (never over an existing
// file: throws Error(EXISTS)), and fsyncs it.
void write_key_file(const std::string& path, const Key& key);

// What a connection's credentials cover: the role, both nonces and the
// pool's identity, so a proof made for one connection (or one server) is
// worth nothing on another.
std::vector<uint8_t> transcript(const char* role, const proto::Nonce& server, const proto::Nonce& client,
                                const std::array<uint8_t, 16>& pool_uuid);
inline constexpr const char* kClientRole = "pmcr-auth-client-1";
inline constexpr const char* kServerRole = "pmcr-auth-server-1";

// Key mode: the MAC of a transcript under KEY's authentication subkey.
Mac prove(const Key& key, const std::vector<uint8_t>& transcript);
// Constant-time check of PROOF (any length: a wrong length is simply false).
bool check(const Key& key, const std::vector<uint8_t>& transcript, const uint8_t* proof, size_t length);

// The pool header's MAC: over IDENTITY, under KEY's pool subkey.
Mac pool_mac(const Key& key, const void* identity, size_t length);
bool check_pool_mac(const Key& key, const void* identity, size_t length, const uint8_t* mac);

}  // namespace pmcr::auth
