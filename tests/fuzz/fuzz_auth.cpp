#include "fuzz_auth.hpp"

#include <unistd.h>

#include <functional>
#include <memory>
#include <type_traits>

#include "access.hpp"
#include "catalogue.hpp"
#include "code_of.hpp"
#include "credentials.hpp"
#include "error.hpp"
#include "pool.hpp"
#include "protocol.hpp"

namespace pmcr::fuzz {
namespace {

using test::code_of;

constexpr uint32_t kOwner = 1000, kStranger = 1001;

struct World {
  World() : path("/dev/shm/pmcr-fuzz-auth-" + std::to_string(getpid()) + ".pool") {
    ::unlink(path.c_str());
    pool = std::make_unique<server::Pool>(server::Pool::open_or_create(path, 8ull << 20));
    ::unlink(path.c_str());  // the mapping stays; nothing is left behind
    catalogue = std::make_unique<server::Catalogue>(*pool);
    catalogue->claim_job("victim", kOwner, kOwner);
    server::AuthOptions o;
    o.method = proto::AuthMethod::Key;
    o.key = auth::Key::generate();
    credentials = std::make_unique<server::Credentials>(o);
    server_nonce = auth::make_nonce();
    client_nonce = auth::make_nonce();
  }
  std::string path;
  std::unique_ptr<server::Pool> pool;
  std::unique_ptr<server::Catalogue> catalogue;
  std::unique_ptr<server::Credentials> credentials;
  proto::Nonce server_nonce, client_nonce;
};

World& world() {
  static World w;
  return w;
}

}  // namespace

std::string check_auth(const uint8_t* data, size_t size) {
  World& w = world();
  proto::Request req;
  if (proto::decode(data, size, &req) != proto::DecodeStatus::Ok) return "";
  const proto::Type type = proto::type_of(req.body);
  const auto need = server::rule_for(type).need;

  // Not authenticated: only HELLO and AUTH get through.
  const int anonymous = code_of([&] { server::authorize(nullptr, req.body, *w.catalogue); });
  if (need != server::Need::Nothing && anonymous != PMCR_E_AUTH)
    return std::string(proto::type_name(type)) + " got past the access check without authentication";

  // AUTH without the key never authenticates.
  if (const auto* a = std::get_if<proto::Auth>(&req.body)) {
    std::array<uint8_t, 16> uuid{};
    std::vector<uint8_t> proof;
    const int rc = code_of([&] { w.credentials->verify(*a, w.server_nonce, w.client_nonce, uuid, &proof); });
    if (rc == 0) return "an AUTH authenticated without the key";
    if (rc != PMCR_E_AUTH) return "an AUTH failed with another code than PMCR_E_AUTH";
  }

  // A stranger never reaches the victim's job; the owner always may.
  const std::string* job = server::job_of(req.body);
  if (job && *job == "victim" && need != server::Need::Nothing && need != server::Need::Any &&
      need != server::Need::Handle) {
    const server::Principal stranger{kStranger, kStranger, false, "stranger"}, owner{kOwner, kOwner, false, "owner"};
    if (code_of([&] { server::authorize(&stranger, req.body, *w.catalogue); }) != PMCR_E_PERM)
      return std::string("a stranger's ") + proto::type_name(type) + " on the victim's job was not refused";
    if (code_of([&] { server::authorize(&owner, req.body, *w.catalogue); }) != 0)
      return std::string("the owner's ") + proto::type_name(type) + " on its own job was refused";
    if (w.catalogue->job_owner("victim") != kOwner) return "the victim's job changed hands";
  }
  return "";
}

}  // namespace pmcr::fuzz
