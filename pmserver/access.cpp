#include "access.hpp"

#include <type_traits>

#include "error.hpp"

namespace pmcr::server {
namespace {

constexpr bool rules_in_order() {
  if (std::size(kRules) != proto::kLastType) return false;
  for (size_t i = 0; i < std::size(kRules); ++i)
    if (static_cast<size_t>(kRules[i].type) != i + 1) return false;
  return true;
}
static_assert(rules_in_order(), "kRules needs exactly one line per request type, in the order of proto::Type");

template <class T, class = void>
struct HasJob : std::false_type {};
template <class T>
struct HasJob<T, std::void_t<decltype(std::declval<const T&>().job)>> : std::true_type {};

}  // namespace

const std::string* job_of(const proto::RequestBody& body) {
  return std::visit(
      [](const auto& m) -> const std::string* {
        if constexpr (HasJob<std::decay_t<decltype(m)>>::value) return &m.job;
        else return nullptr;
      },
      body);
}

const Rule& rule_for(proto::Type type) { return kRules[static_cast<size_t>(type) - 1]; }

bool visible(const Principal& who, std::optional<uint32_t> owner) {
  // A job whose owner is unknown is the admins'; with --auth key or none,
  // whose one principal is everyone there is, it is that principal's too
  // (else nobody could ever read or delete it).
  if (owner == kUnknownOwner) return who.admin || who.uid == proto::kSharedPrincipal;
  return who.admin || !owner || *owner == who.uid;
}

void authorize(const Principal* who, const proto::RequestBody& request, Catalogue& catalogue) {
  const Rule& rule = rule_for(proto::type_of(request));
  if (rule.need == Need::Nothing) return;
  if (!who)
    throw Error(PMCR_E_AUTH, std::string(proto::type_name(rule.type)) +
                                 " before authentication: a connection must say HELLO and AUTH first");
  if (rule.need == Need::Any || rule.need == Need::Handle) return;
  const std::string* job = job_of(request);
  if (!job) throw Error(PMCR_E_INTERNAL, std::string("access rule of ") + proto::type_name(rule.type) + " needs a job");
  if (job->empty() && rule.type == proto::Type::ListVersions) return;  // every job: the reply is filtered
  const std::optional<uint32_t> owner = catalogue.job_owner(*job);
  if (!visible(*who, owner))
    throw Error(PMCR_E_PERM, "job '" + *job + "' belongs to another owner; " + who->name + " may not " +
                                 (rule.need == Need::Read ? "see" : "change") + " it");
  if (rule.need == Need::Claim && !owner) catalogue.claim_job(*job, who->uid, who->gid);
}

}  // namespace pmcr::server
