#include "auth.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "error.hpp"
#include "files.hpp"

namespace pmcr::auth {
namespace {

constexpr const char* kKeyPrefix = "pmcr-key-1 ";
constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES + 1] = "pmcr-key";  // exactly 8 bytes
enum Subkey : uint64_t { kAuthSubkey = 1, kPoolSubkey = 2 };

struct Subkey32 {
  std::array<uint8_t, 32> bytes{};
  ~Subkey32() { sodium_memzero(bytes.data(), bytes.size()); }
};

void derive(const Key& key, Subkey id, Subkey32& out) {
  static_assert(crypto_kdf_KEYBYTES == kKeySize, "libsodium's kdf key size changed");
  init();
  crypto_kdf_derive_from_key(out.bytes.data(), out.bytes.size(), id, kKdfContext, key.data());
}

Mac hmac(const Subkey32& k, const void* data, size_t length) {
  static_assert(crypto_auth_hmacsha256_BYTES == kMacSize && crypto_auth_hmacsha256_KEYBYTES == 32, "");
  Mac out{};
  crypto_auth_hmacsha256(out.data(), static_cast<const unsigned char*>(data), length, k.bytes.data());
  return out;
}

}  // namespace

void init() {
  static const int result = sodium_init();
  if (result < 0) throw Error(PMCR_E_INTERNAL, "libsodium could not be initialised (sodium_init failed)");
}

void random_bytes(void* out, size_t n) {
  init();
  randombytes_buf(out, n);
}

proto::Nonce make_nonce() {
  proto::Nonce n;
  random_bytes(n.data(), n.size());
  return n;
}

Key::~Key() { sodium_memzero(bytes_.data(), bytes_.size()); }

Key Key::generate() {
  Key k;
  random_bytes(k.bytes_.data(), k.bytes_.size());
  return k;
}

Key Key::parse(const std::string& text, const std::string& origin) {
  std::string line = text;
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
  const size_t prefix = std::strlen(kKeyPrefix);
  if (line.compare(0, prefix, kKeyPrefix) != 0 || line.size() != prefix + 2 * kKeySize)
    throw Error(PMCR_E_CONFIG, origin + " is not a pmcr key (expected one line \"pmcr-key-1\" and 64 hex digits; "
                                        "make one with 'pmcr keygen FILE')");
  Key k;
  size_t bin_len = 0;
  init();
  if (sodium_hex2bin(k.bytes_.data(), k.bytes_.size(), line.data() + prefix, 2 * kKeySize, nullptr, &bin_len,
                     nullptr) != 0 ||
      bin_len != kKeySize)
    throw Error(PMCR_E_CONFIG, origin + " is not a pmcr key (its 64 digits are not all hexadecimal)");
  return k;
}

std::string Key::text() const {
  char hex[2 * kKeySize + 1];
  sodium_bin2hex(hex, sizeof hex, bytes_.data(), bytes_.size());
  std::string out = std::string(kKeyPrefix) + hex + "\n";
  sodium_memzero(hex, sizeof hex);
  return out;
}

bool Key::operator==(const Key& other) const { return sodium_memcmp(bytes_.data(), other.bytes_.data(), kKeySize) == 0; }

Key read_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    throw Error(PMCR_E_CONFIG, "cannot read the key file " + path + ": " + std::strerror(errno) +
                                   (errno == ENOENT ? " (make one with 'pmcr keygen " + path + "')" : std::string()));
  struct stat st {};
  std::string text;
  try {
    if (::fstat(fd, &st) != 0) throw Error(PMCR_E_CONFIG, "cannot stat the key file " + path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw Error(PMCR_E_CONFIG, "the key file " + path + " is not a regular file");
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      throw Error(PMCR_E_CONFIG, "the key file " + path + " has mode " + mode +
                                     ": others may read it, so it is refused; run 'chmod 600 " + path + "'");
    }
    char buf[256];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < 4096) text.append(buf, static_cast<size_t>(n));
    sodium_memzero(buf, sizeof buf);
    if (n < 0) throw Error(PMCR_E_CONFIG, "cannot read the key file " + path + ": " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  Key k = Key::parse(text, "the key file " + path);
  sodium_memzero(text.data(), text.size());
  return k;
}

void write_key_file(const std::string& path, const Key& key) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      throw Error(PMCR_E_EXISTS, path + " already exists: a key is never overwritten (remove it first if you mean to)");
    throw Error(PMCR_E_IO, "cannot create the key file " + path + ": " + std::strerror(errno));
  }
  std::string text = key.text();
  const bool ok = ::fchmod(fd, 0600) == 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const int err = errno;
  sodium_memzero(text.data(), text.size());
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw Error(PMCR_E_IO, "cannot write the key file " + path + ": " + std::strerror(err));
  }
  // The new name durable too: a pool bound to this key must not outlive it
  // (best effort: the key itself is written and synced).
  try {
    sync_directory(parent_directory(path));
  } catch (const Error&) {
  }
}

std::vector<uint8_t> transcript(const char* role, const proto::Nonce& server, const proto::Nonce& client,
                                const std::array<uint8_t, 16>& pool_uuid) {
  std::vector<uint8_t> t(role, role + std::strlen(role) + 1);  // with its terminator: roles never run together
  t.insert(t.end(), server.begin(), server.end());
  t.insert(t.end(), client.begin(), client.end());
  t.insert(t.end(), pool_uuid.begin(), pool_uuid.end());
  return t;
}

Mac prove(const Key& key, const std::vector<uint8_t>& transcript) {
  Subkey32 k;
  derive(key, kAuthSubkey, k);
  return hmac(k, transcript.data(), transcript.size());
}

bool check(const Key& key, const std::vector<uint8_t>& transcript, const uint8_t* proof, size_t length) {
  if (length != kMacSize || proof == nullptr) return false;
  const Mac expected = prove(key, transcript);
  return sodium_memcmp(expected.data(), proof, kMacSize) == 0;
}

Mac pool_mac(const Key& key, const void* identity, size_t length) {
  Subkey32 k;
  derive(key, kPoolSubkey, k);
  return hmac(k, identity, length);
}

bool check_pool_mac(const Key& key, const void* identity, size_t length, const uint8_t* mac) {
  const Mac expected = pool_mac(key, identity, length);
  return sodium_memcmp(expected.data(), mac, kMacSize) == 0;
}

}  // namespace pmcr::auth
