// Credential: how this client proves who it is to pmserver (README,
// "Security"). The only file of libpmcr that calls libmunge.
//
// Settings (environment, or the same keys in pmcr_init's file):
//   PMCR_AUTH          munge, key or none; unset: whatever the server asks
//   PMCR_KEY_FILE      the shared key (mode 0600), for key
//   PMCR_MUNGE_SOCKET  munged's socket, for munge (default: MUNGE's own)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "auth.hpp"
#include "protocol.hpp"

namespace pmcr::client {

struct Credential {
  std::optional<proto::AuthMethod> method;  // none: the server's choice
  std::optional<auth::Key> key;
  std::string key_file;      // where KEY came from (for messages)
  std::string munge_socket;  // "" = MUNGE's default

  // From the three settings' values (empty = unset); ORIGIN names where they
  // came from. Reads the key file. Throws Error(CONFIG) naming the setting.
  static Credential from(const std::string& method, const std::string& key_file, const std::string& munge_socket);
  // From PMCR_AUTH, PMCR_KEY_FILE and PMCR_MUNGE_SOCKET.
  static Credential from_environment();
};

// The AUTH request proving CREDENTIAL for a connection to SERVER (an
// address, for messages) whose HELLO said HELLO_REPLY, with the client's
// nonce CLIENT_NONCE. Throws Error(AUTH) when this client has nothing the
// server accepts.
proto::Auth make_auth(const Credential& credential, const std::string& server, const proto::HelloReply& hello,
                      const proto::Nonce& client_nonce);
// Checks the server's own proof (key mode). Throws Error(AUTH).
void check_server(const Credential& credential, const std::string& server, const proto::HelloReply& hello,
                  const proto::Nonce& client_nonce, const proto::AuthReply& reply);

}  // namespace pmcr::client
