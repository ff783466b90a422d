#include "credential.hpp"

#include <munge.h>

#include <cstdlib>
#include <cstring>

#include "error.hpp"

namespace pmcr::client {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

const char* name(proto::AuthMethod m) { return proto::auth_method_name(m); }

}  // namespace

Credential Credential::from(const std::string& method, const std::string& key_file, const std::string& munge_socket) {
  Credential c;
  if (method == "munge") c.method = proto::AuthMethod::Munge;
  else if (method == "key") c.method = proto::AuthMethod::Key;
  else if (method == "none") c.method = proto::AuthMethod::None;
  else if (!method.empty())
    throw Error(PMCR_E_CONFIG, "PMCR_AUTH = \"" + method + "\" is invalid: expected munge, key or none");
  if (!key_file.empty()) {
    c.key = auth::read_key_file(key_file);
    c.key_file = key_file;
  }
  if (c.method == proto::AuthMethod::Key && !c.key)
    throw Error(PMCR_E_CONFIG, "PMCR_AUTH=key needs PMCR_KEY_FILE: the key file pmserver was given (--key-file)");
  c.munge_socket = munge_socket;
  return c;
}

Credential Credential::from_environment() {
  return from(env("PMCR_AUTH"), env("PMCR_KEY_FILE"), env("PMCR_MUNGE_SOCKET"));
}

proto::Auth make_auth(const Credential& c, const std::string& server, const proto::HelloReply& hello,
                      const proto::Nonce& client_nonce) {
  if (c.method && *c.method != hello.auth)
    throw Error(PMCR_E_AUTH, "pmserver at " + server + " authenticates with '" + name(hello.auth) +
                                 "', but PMCR_AUTH says '" + name(*c.method) + "': set PMCR_AUTH=" + name(hello.auth) +
                                 " (or leave it unset)");
  // A client that holds a key expects a server that proves it holds it too:
  // a server that asks for less is refused unless PMCR_AUTH says so.
  if (!c.method && c.key && hello.auth != proto::AuthMethod::Key)
    throw Error(PMCR_E_AUTH, "PMCR_KEY_FILE is set, but pmserver at " + server + " authenticates with '" +
                                 name(hello.auth) + "' and cannot prove it holds that key: is it the right server? "
                                 "Set PMCR_AUTH=" + name(hello.auth) + " to accept it");
  proto::Auth a;
  a.method = hello.auth;
  const auto transcript = auth::transcript(auth::kClientRole, hello.nonce, client_nonce, hello.pool_uuid);
  switch (hello.auth) {
    case proto::AuthMethod::None:
      break;
    case proto::AuthMethod::Key: {
      if (!c.key)
        throw Error(PMCR_E_AUTH, "pmserver at " + server + " requires its key: set PMCR_KEY_FILE to a copy of the "
                                     "key file it was started with (--key-file)");
      const auth::Mac proof = auth::prove(*c.key, transcript);
      a.credential.assign(proof.begin(), proof.end());
      break;
    }
    case proto::AuthMethod::Munge: {
      munge_ctx_t ctx = munge_ctx_create();
      if (!ctx) throw Error(PMCR_E_NOMEM, "cannot create a MUNGE context");
      char* cred = nullptr;
      munge_err_t err = EMUNGE_SUCCESS;
      if (!c.munge_socket.empty()) err = munge_ctx_set(ctx, MUNGE_OPT_SOCKET, c.munge_socket.c_str());
      if (err == EMUNGE_SUCCESS)
        err = munge_encode(&cred, ctx, transcript.data(), static_cast<int>(transcript.size()));
      const std::string detail = err == EMUNGE_SUCCESS ? "" : munge_ctx_strerror(ctx);
      munge_ctx_destroy(ctx);
      if (err != EMUNGE_SUCCESS)
        throw Error(PMCR_E_AUTH, "pmserver at " + server + " requires a MUNGE credential, and this host cannot make "
                                     "one: " + detail + " (is munged running here? PMCR_MUNGE_SOCKET names its socket)");
      a.credential.assign(cred, cred + std::strlen(cred));
      std::free(cred);
      break;
    }
  }
  return a;
}

void check_server(const Credential& c, const std::string& server, const proto::HelloReply& hello,
                  const proto::Nonce& client_nonce, const proto::AuthReply& reply) {
  if (hello.auth != proto::AuthMethod::Key) return;
  const auto transcript = auth::transcript(auth::kServerRole, hello.nonce, client_nonce, hello.pool_uuid);
  if (!auth::check(*c.key, transcript, reply.proof.data(), reply.proof.size()))
    throw Error(PMCR_E_AUTH, "pmserver at " + server + " could not prove it holds the key of " + c.key_file +
                                 ": it is not the server that key belongs to (check PMCR_SERVERS)");
}

}  // namespace pmcr::client
