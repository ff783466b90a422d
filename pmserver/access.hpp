// Access: what each request needs before its handler runs, in one table
// (kRules, one line per request type). The dispatcher calls authorize()
// once per request; no handler checks who is asking.
//
//   Nothing  HELLO and AUTH, the only requests before authentication
//   Any      any authenticated principal (STAT)
//   Read     a job the principal may see: its own, or any for an admin
//   Own      a job the principal owns (or a free name: the handler then
//            finds nothing)
//   Claim    as Own, and a free name becomes the principal's (BEGIN, CREATE)
//   Handle   a handle given to this connection: checked by the handler
//            against the connection's grants (grants.hpp)
//
// A request of a type with a `job` field is checked on that job; an empty
// job (LIST_VERSIONS of every job) is filtered by visible() instead.
#pragma once

#include <cstdint>
#include <string>

#include "catalogue.hpp"
#include "credentials.hpp"
#include "protocol.hpp"

namespace pmcr::server {

enum class Need : uint8_t { Nothing, Any, Read, Own, Claim, Handle };

struct Rule {
  proto::Type type;
  Need need;
};

// Types in order: kRules[t - 1] is type t's rule (checked at compile time).
inline constexpr Rule kRules[] = {
    {proto::Type::Hello, Need::Nothing},      {proto::Type::Stat, Need::Any},
    {proto::Type::Create, Need::Claim},       {proto::Type::Commit, Need::Handle},
    {proto::Type::Seal, Need::Own},           {proto::Type::ListVersions, Need::Read},
    {proto::Type::ListRegions, Need::Read},   {proto::Type::Open, Need::Read},
    {proto::Type::Close, Need::Handle},       {proto::Type::Delete, Need::Own},
    {proto::Type::Read, Need::Handle},        {proto::Type::Begin, Need::Claim},
    {proto::Type::Abort, Need::Own},          {proto::Type::Verify, Need::Read},
    {proto::Type::Auth, Need::Nothing},       {proto::Type::RegionCreate, Need::Claim},
    {proto::Type::RegionOpen, Need::Read},    {proto::Type::RegionClear, Need::Handle},
    {proto::Type::RegionCommit, Need::Handle}, {proto::Type::RegionStat, Need::Handle},
    {proto::Type::RegionRead, Need::Handle},  {proto::Type::RegionChanged, Need::Handle},
    {proto::Type::RegionRemove, Need::Own},   {proto::Type::Join, Need::Own},
    {proto::Type::Renew, Need::Own},          {proto::Type::Leave, Need::Own},
    {proto::Type::Watch, Need::Own},          {proto::Type::Fail, Need::Own},
};

const Rule& rule_for(proto::Type type);

// The job a request names, if its type has a `job` field.
const std::string* job_of(const proto::RequestBody& request);

// May WHO see JOB (owned by OWNER, or free if none)?
bool visible(const Principal& who, std::optional<uint32_t> owner);

// Checks REQUEST against its rule for WHO (null: not authenticated yet),
// claiming a free job name where the rule says so. Throws AUTH (not
// authenticated), PERM (another owner's job).
void authorize(const Principal* who, const proto::RequestBody& request, Catalogue& catalogue);

}  // namespace pmcr::server
