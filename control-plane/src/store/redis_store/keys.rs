//! Where the Redis store keeps things (every key starts `keel:`) and the
//! Lua scripts that change them atomically.

use super::super::SessionKey;

pub const EPOCH_KEY: &str = "keel:epoch";
pub const BUDGETS_KEY: &str = "keel:budget_overrides";
/// Keys parked by a 429: `provider/key_ref` -> until (Unix ms).
pub const PARKED_KEY: &str = "keel:parked";

/// A report applied by some replica (`SET NX`, expiring).
pub fn report_claim_key(decision_id: &str) -> Vec<u8> {
    [b"keel:r:".as_slice(), decision_id.as_bytes()].concat()
}

/// Before a session key (`tenant\0id`): where its session is.
pub const SESSION_PREFIX: &[u8] = b"keel:s:";

pub fn session_key(key: &SessionKey) -> Vec<u8> {
    [SESSION_PREFIX, key.as_bytes()].concat()
}

pub fn timeline_key(key: &SessionKey) -> Vec<u8> {
    [b"keel:d:".as_slice(), key.as_bytes()].concat()
}

pub fn tenant_day_key(tenant: &str, day: u64) -> Vec<u8> {
    let mut k = b"keel:t:".to_vec();
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(day.to_string().as_bytes());
    k
}

/// The tenant's conversations by last activity (a sorted set: score the
/// last activity in Unix ms, member the conversation id), for listings
/// newest first without a scan.
pub fn activity_key(key: &SessionKey) -> Vec<u8> {
    let tenant = key.as_bytes().split(|&b| b == 0).next().unwrap_or_default();
    activity_key_of(tenant)
}

pub fn activity_key_of(tenant: &[u8]) -> Vec<u8> {
    [b"keel:a:".as_slice(), tenant].concat()
}

/// Every tenant's conversations by last activity (a sorted set: score the
/// last activity in Unix ms, member the session key `tenant\0id`), for the
/// console's list across tenants.
pub const ALL_ACTIVITY_KEY: &str = "keel:a";

/// Every tenant's conversations with one profile, or pinned to one model,
/// by last activity (sorted sets like [`ALL_ACTIVITY_KEY`]), for the
/// console's list filtered by either.
pub fn profile_activity_key(profile: &[u8]) -> Vec<u8> {
    [b"keel:ap:".as_slice(), profile].concat()
}

pub fn model_activity_key(model: &[u8]) -> Vec<u8> {
    [b"keel:am:".as_slice(), model].concat()
}

/// The conversation id of a session key.
pub fn conversation_id(key: &SessionKey) -> &[u8] {
    let bytes = key.as_bytes();
    bytes
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes, |i| &bytes[i + 1..])
}

/// Sets the session (`KEYS[1]`) if its version is still `ARGV[1]` ("0":
/// absent), expiring at `ARGV[3]`; records its activity `ARGV[4]` under
/// `ARGV[5]` in the tenant's activity index (`KEYS[2]`), dropping entries
/// idle since before `ARGV[6]`, and under `ARGV[7]` (the session key) in
/// the index across tenants (`KEYS[3]`), likewise trimmed; likewise (and
/// expiring with the tenant's) in the next `ARGV[8]` keys (its profile's
/// and pinned model's indexes), and out of the keys after those (the
/// indexes of the profile and model its replaced version had).
pub const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if (v or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tonumber(ARGV[1]) + 1, 'b', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
local adds = 3 + tonumber(ARGV[8] or '0')
for i = 4, adds do
  redis.call('ZADD', KEYS[i], ARGV[4], ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[6])
  redis.call('PEXPIREAT', KEYS[i], ARGV[3])
end
for i = adds + 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[7]) end
return 1
";

/// Marks the session (`KEYS[1]`) as served degraded, if it exists (the
/// mark is a field of its hash, so it goes with the session).
pub const MARK_DEGRADED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'dg', '1') end
return 1
";

/// Replaces list item `ARGV[1]` if it is still `ARGV[2]`.
pub const REPLACE_ITEM: &str = r"
if redis.call('LINDEX', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('LSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Adds to a tenant day's totals; returns them.
pub const ADD_DAY: &str = r"
local usd = redis.call('HINCRBYFLOAT', KEYS[1], 'usd', ARGV[1])
local turns = redis.call('HINCRBY', KEYS[1], 'turns', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return {usd, turns}
";

/// The parked keys still parked at `ARGV[1]`; drops the others.
pub const PARKED: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(live, all[i])
    table.insert(live, all[i + 1])
  end
end
return live
";
