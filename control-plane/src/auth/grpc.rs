//! The gRPC side: an interceptor puts the caller's [`Principal`] in the
//! request's extensions (or answers UNAUTHENTICATED), each handler asks for
//! the [`Need`] of its call, and `Route` / `Report` are scoped to a sidecar's
//! tenant before they are decided.

use std::sync::Arc;

use keel::{names, pb};
use tonic::{Request, Status};

use super::{AuthError, Credentials, Need, Principal};

/// Most outcomes in one `Report` batch (Keel's sidecar sends at most 256).
pub const MAX_REPORT_OUTCOMES: usize = 1024;

/// Most attempts, and rate-limit headers per attempt, read from one outcome.
pub const MAX_REPORT_ATTEMPTS: usize = 32;

/// Resolves the bearer token of every call to its principal.
#[derive(Clone)]
pub struct Authenticate(pub Arc<Credentials>);

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let authorization = req.metadata().get("authorization").map(|v| v.as_bytes());
        let principal = self.0.authenticate(authorization)?;
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The caller of `req`, if it may do `need`. A request that did not pass
/// [`Authenticate`] has no principal and is refused.
pub fn principal<T>(req: &Request<T>, need: Need) -> Result<Principal, Status> {
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(AuthError::Unauthenticated)?;
    principal.allow(need)?;
    Ok(principal)
}

fn checked(what: &'static str, name: &str) -> Result<(), Status> {
    names::check(what, name).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Checks each `(field, name)` by the one rule of [`keel::names`]:
/// INVALID_ARGUMENT naming the first bad field (never echoing it).
pub fn check_names(list: &[(&'static str, &str)]) -> Result<(), Status> {
    list.iter().try_for_each(|(what, name)| checked(what, name))
}

/// Puts `req` in the principal's tenant (a sidecar's own).
pub fn scope_route(principal: &Principal, req: &mut pb::RouteRequest) -> Result<(), Status> {
    checked("tenant", &req.tenant)?;
    let tenant = principal.tenant(&req.tenant)?;
    if tenant != req.tenant {
        req.tenant = tenant.to_owned();
    }
    Ok(())
}

/// Checks a `Report` batch (size, names) and puts every outcome in the
/// principal's tenant.
pub fn scope_report(principal: &Principal, batch: &mut pb::ReportBatch) -> Result<(), Status> {
    if batch.outcomes.len() > MAX_REPORT_OUTCOMES {
        return Err(Status::invalid_argument(format!(
            "report batch has {} outcomes; at most {MAX_REPORT_OUTCOMES} allowed",
            batch.outcomes.len()
        )));
    }
    for outcome in &mut batch.outcomes {
        check_outcome(outcome)?;
        let tenant = principal.tenant(&outcome.tenant)?;
        if tenant != outcome.tenant {
            outcome.tenant = tenant.to_owned();
        }
    }
    Ok(())
}

fn check_outcome(o: &pb::Outcome) -> Result<(), Status> {
    checked("tenant", &o.tenant)?;
    checked("conversation id", &o.conversation_id)?;
    checked("decision id", &o.decision_id)?;
    checked("profile", &o.profile)?;
    checked("model", &o.model)?;
    if o.attempts.len() > MAX_REPORT_ATTEMPTS {
        return Err(Status::invalid_argument(format!(
            "outcome has {} attempts; at most {MAX_REPORT_ATTEMPTS} allowed",
            o.attempts.len()
        )));
    }
    for a in &o.attempts {
        if a.rate_limit_headers.len() > MAX_REPORT_ATTEMPTS {
            return Err(Status::invalid_argument(format!(
                "attempt has {} rate-limit headers; at most {MAX_REPORT_ATTEMPTS} allowed",
                a.rate_limit_headers.len()
            )));
        }
        checked("error class", &a.error_class)?;
        if let Some(t) = &a.target {
            checked("target model", &t.model)?;
            checked("target provider", &t.provider)?;
            checked("target key reference", &t.key_ref)?;
        }
    }
    Ok(())
}
