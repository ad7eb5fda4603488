//! gRPC metadata keys of `Route` refusals: the control plane sets them, the
//! sidecar (and any other caller) reads them. Named once, here.

/// Seconds the caller should wait before asking again (shed under load, a
/// pinned model down).
pub const RETRY_AFTER: &str = "retry-after";
/// The budget cap reached: `conversation_usd`, `conversation_turns` or
/// `tenant_usd_per_day`. Its presence tells a budget refusal from a shed.
pub const BUDGET: &str = "keel-budget";
/// The cap's limit (USD or turns).
pub const BUDGET_LIMIT: &str = "keel-budget-limit";
/// What was used against the cap.
pub const BUDGET_USED: &str = "keel-budget-used";
/// USD left under the tightest USD cap.
pub const BUDGET_REMAINING_USD: &str = "keel-budget-remaining-usd";
/// Turns left under the turn cap.
pub const BUDGET_REMAINING_TURNS: &str = "keel-budget-remaining-turns";
/// The loop pattern a divergence stop ended the run on.
pub const DIVERGENCE: &str = "keel-divergence";

/// Request metadata of a `RouteStream` call asking for heartbeats (any
/// value): answers with id 0 and no result while requests take long.
pub const HEARTBEATS: &str = "keel-heartbeats";
