#include "credentials.hpp"

#include <grp.h>
#include <munge.h>
#include <pwd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include "error.hpp"

namespace pmcr::server {
namespace {

// The account of UID, if this host knows it: its name and primary group.
std::optional<std::pair<std::string, gid_t>> account(uint32_t uid) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) != 0 || !found) return std::nullopt;
  return std::make_pair(std::string(found->pw_name), found->pw_gid);
}

std::string user_name(uint32_t uid) {
  const auto a = account(uid);
  return a ? "user " + a->first + " (uid " + std::to_string(uid) + ")" : "uid " + std::to_string(uid);
}

}  // namespace

Credentials::Credentials(AuthOptions options) : options_(std::move(options)) {
  if (options_.method == proto::AuthMethod::Key && !options_.key)
    throw Error(PMCR_E_CONFIG, "--auth key needs --key-file");
}

bool Credentials::is_admin(uint32_t uid, uint32_t gid) const {
  if (uid == 0) return true;
  if (!options_.admin_group) return false;
  if (gid == *options_.admin_group) return true;
  const auto a = account(uid);
  if (!a) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  if (::getgrouplist(a->first.c_str(), a->second, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (::getgrouplist(a->first.c_str(), a->second, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i)
    if (groups[static_cast<size_t>(i)] == *options_.admin_group) return true;
  return false;
}

Principal Credentials::verify(const proto::Auth& m, const proto::Nonce& server, const proto::Nonce& client,
                              const std::array<uint8_t, 16>& pool_uuid, std::vector<uint8_t>* proof) const {
  proof->clear();
  if (m.method != options_.method)
    throw Error(PMCR_E_AUTH, std::string("this pmserver authenticates with '") +
                                 proto::auth_method_name(options_.method) + "', not '" +
                                 proto::auth_method_name(m.method) + "' (set PMCR_AUTH=" +
                                 proto::auth_method_name(options_.method) + ")");
  const auto transcript = auth::transcript(auth::kClientRole, server, client, pool_uuid);
  switch (options_.method) {
    case proto::AuthMethod::None:
      return Principal{proto::kSharedPrincipal, proto::kSharedPrincipal, false, "anyone (pmserver --auth none)"};
    case proto::AuthMethod::Key: {
      if (!auth::check(*options_.key, transcript, m.credential.data(), m.credential.size()))
        throw Error(PMCR_E_AUTH, "the key proof is wrong: this client's key (PMCR_KEY_FILE) is not the server's");
      const auth::Mac mine = auth::prove(*options_.key, auth::transcript(auth::kServerRole, server, client, pool_uuid));
      proof->assign(mine.begin(), mine.end());
      return Principal{proto::kSharedPrincipal, proto::kSharedPrincipal, false, "holders of the server's key"};
    }
    case proto::AuthMethod::Munge:
      return munge(m.credential, transcript);
  }
  throw Error(PMCR_E_AUTH, "unknown authentication method");
}

Principal Credentials::munge(const std::vector<uint8_t>& credential, const std::vector<uint8_t>& transcript) const {
  if (credential.empty()) throw Error(PMCR_E_AUTH, "no MUNGE credential was given");
  const std::string text(credential.begin(), credential.end());
  if (text.find('\0') != std::string::npos) throw Error(PMCR_E_AUTH, "the MUNGE credential is malformed");
  std::unique_ptr<std::remove_pointer_t<munge_ctx_t>, void (*)(munge_ctx_t)> ctx(munge_ctx_create(), munge_ctx_destroy);
  if (!ctx) throw Error(PMCR_E_NOMEM, "cannot create a MUNGE context");
  if (!options_.munge_socket.empty() &&
      munge_ctx_set(ctx.get(), MUNGE_OPT_SOCKET, options_.munge_socket.c_str()) != EMUNGE_SUCCESS)
    throw Error(PMCR_E_INTERNAL, "cannot set the MUNGE socket: " + std::string(munge_ctx_strerror(ctx.get())));
  void* payload = nullptr;
  int length = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  const munge_err_t err = munge_decode(text.c_str(), ctx.get(), &payload, &length, &uid, &gid);
  std::unique_ptr<void, void (*)(void*)> owned(payload, std::free);
  switch (err) {
    case EMUNGE_SUCCESS: break;
    case EMUNGE_CRED_REPLAYED:
      throw Error(PMCR_E_AUTH, "the MUNGE credential was already used (a replay); each connection needs a new one");
    case EMUNGE_CRED_EXPIRED:
    case EMUNGE_CRED_REWOUND:
      throw Error(PMCR_E_AUTH, std::string("the MUNGE credential is out of its time window (") + munge_strerror(err) +
                                   "): check the clocks of client and server");
    case EMUNGE_SOCKET:
    case EMUNGE_SNAFU:
    case EMUNGE_NO_MEMORY:
      throw Error(PMCR_E_AUTH, "pmserver cannot check MUNGE credentials now (" +
                                   std::string(munge_ctx_strerror(ctx.get())) + "); is munged running on the server?");
    default:
      throw Error(PMCR_E_AUTH, std::string("the MUNGE credential is not valid here (") + munge_strerror(err) +
                                   "): client and server need munged with the same key");
  }
  if (length < 0 || static_cast<size_t>(length) != transcript.size() ||
      std::memcmp(payload, transcript.data(), transcript.size()) != 0)
    throw Error(PMCR_E_AUTH, "the MUNGE credential was made for another connection (a replay)");
  if (static_cast<uint32_t>(uid) >= proto::kSharedPrincipal)
    throw Error(PMCR_E_AUTH, "uid " + std::to_string(uid) + " is reserved by pmserver and may not authenticate");
  return Principal{static_cast<uint32_t>(uid), static_cast<uint32_t>(gid), is_admin(uid, gid), user_name(uid)};
}

}  // namespace pmcr::server
