// Credentials: who a connection's AUTH proves it is (pmserver --auth). The
// only file of pmserver that calls libmunge.
//
//  - munge: the client's MUNGE credential, decoded by the munged the server
//    trusts (--munge-socket), must carry exactly this connection's
//    transcript (both nonces and the pool's uuid) as its payload: a
//    credential captured on one connection is refused on any other, and
//    munged itself refuses a credential decoded twice. The principal is the
//    uid and gid MUNGE vouches for.
//  - key: the client's HMAC of the transcript under the shared key; the
//    server answers with its own (mutual). Every key holder is one
//    principal (proto::kSharedPrincipal).
//  - none: everyone is that one principal.
//
// Admins (root, members of --admin-group) may see and act on every job.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "auth.hpp"
#include "protocol.hpp"

namespace pmcr::server {

struct Principal {
  uint32_t uid = 0;
  uint32_t gid = 0;
  bool admin = false;
  std::string name;  // for logs and messages
};

struct AuthOptions {
  proto::AuthMethod method = proto::AuthMethod::None;
  std::optional<auth::Key> key;          // --key-file: key mode's secret, and the pool's
  std::string munge_socket;              // "" = MUNGE's default
  std::optional<gid_t> admin_group;      // --admin-group
};

class Credentials {
 public:
  explicit Credentials(AuthOptions options);
  proto::AuthMethod method() const { return options_.method; }

  // Checks the AUTH of a connection whose HELLO exchanged CLIENT and SERVER
  // nonces. On success fills *PROOF with the server's own proof (key mode;
  // empty otherwise) and returns the principal. Throws Error(AUTH) saying
  // what was wrong (and nothing that helps a guesser).
  Principal verify(const proto::Auth& auth, const proto::Nonce& server, const proto::Nonce& client,
                   const std::array<uint8_t, 16>& pool_uuid, std::vector<uint8_t>* proof) const;

 private:
  Principal munge(const std::vector<uint8_t>& credential, const std::vector<uint8_t>& transcript) const;
  bool is_admin(uint32_t uid, uint32_t gid) const;

  AuthOptions options_;
};

}  // namespace pmcr::server
