//! Which model a conversation without a pin takes over from its caller: the
//! one it was served while the control plane was unreachable, else the pin
//! the caller was last told (a pin the store no longer has: idled out, or
//! lost with a store failover). Either way the decision says so.

use keel::pb::RouteRequest;

use super::RouterState;
use crate::config::Profile;

impl RouterState {
    /// The catalog model to adopt as the pin, and why (for the reason). Only
    /// a model that meets the profile's floor may become its pin.
    pub(super) fn adoptable<'r>(
        &self,
        req: &'r RouteRequest,
        profile: &Profile,
    ) -> Option<(&'r str, &'static str)> {
        let known = |m: &str| !m.is_empty() && self.meets_floor(profile, m);
        if known(&req.degraded_model) {
            return Some((
                &req.degraded_model,
                "served while the control plane was unreachable",
            ));
        }
        known(&req.known_pin).then_some((
            req.known_pin.as_str(),
            "the pin the caller was last told (the store no longer had the session: idle past \
             its TTL, or lost in a store failure)",
        ))
    }
}
