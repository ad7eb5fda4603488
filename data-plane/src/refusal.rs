//! A refusal from the control plane, mapped once to the error the app gets.
//! `None` means the answer is no refusal at all (the control plane is
//! unreachable, slow or broken): the sidecar then fails static.

use keel::metadata;
use tonic::{Code, Status};

use crate::error::{ApiError, BudgetExceeded};

/// The app-facing error for a `Route` refusal, or `None` to fail static.
pub fn to_api_error(status: &Status) -> Option<ApiError> {
    let message = || status.message().to_owned();
    Some(match status.code() {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ApiError::BadRequest(message())
        }
        Code::NotFound => ApiError::NotFound(message()),
        Code::ResourceExhausted => resource_exhausted(status),
        // The control plane refused this sidecar's own credentials: the
        // operator's problem, not the app's (never a 401 to the app).
        Code::PermissionDenied | Code::Unauthenticated => {
            tracing::error!(
                code = ?status.code(),
                message = status.message(),
                "the control plane refused this sidecar's credential; check --control-plane-token and --tenant"
            );
            ApiError::BadGateway(format!(
                "the control plane refused this gateway (not the app's credential): {}",
                status.message()
            ))
        }
        Code::Aborted => ApiError::Wait {
            message: message(),
            retry_after_secs: text(status, metadata::RETRY_AFTER).and_then(|v| v.parse().ok()),
        },
        _ => return None,
    })
}

fn text<'a>(status: &'a Status, key: &str) -> Option<&'a str> {
    status.metadata().get(key).and_then(|v| v.to_str().ok())
}

/// RESOURCE_EXHAUSTED from `Route`: a budget cap (metadata `keel-budget`,
/// answered 402) or load shedding (answered 429 with `Retry-After`).
fn resource_exhausted(status: &Status) -> ApiError {
    let num = |k: &str| text(status, k).and_then(|v| v.parse::<f64>().ok());
    match text(status, metadata::BUDGET) {
        Some(budget) => ApiError::BudgetExceeded(Box::new(BudgetExceeded {
            message: status.message().to_owned(),
            budget: budget.to_owned(),
            limit: num(metadata::BUDGET_LIMIT),
            used: num(metadata::BUDGET_USED),
            remaining_usd: num(metadata::BUDGET_REMAINING_USD),
            remaining_turns: text(status, metadata::BUDGET_REMAINING_TURNS)
                .and_then(|v| v.parse().ok()),
        })),
        None => ApiError::RateLimited {
            message: status.message().to_owned(),
            retry_after_secs: Some(
                text(status, metadata::RETRY_AFTER)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn resource_exhausted_is_a_budget_with_metadata_and_a_shed_without() {
        let mut s = Status::resource_exhausted("budget exceeded");
        s.metadata_mut()
            .insert(metadata::BUDGET, "conversation_usd".parse().unwrap());
        s.metadata_mut()
            .insert(metadata::BUDGET_REMAINING_USD, "0.000000".parse().unwrap());
        match to_api_error(&s) {
            Some(ApiError::BudgetExceeded(b)) => {
                assert_eq!(b.budget, "conversation_usd");
                assert_eq!(b.remaining_usd, Some(0.0));
                assert_eq!(b.remaining_turns, None);
            }
            other => panic!("{other:?}"),
        }
        let mut s = Status::resource_exhausted("shed under load");
        s.metadata_mut()
            .insert(metadata::RETRY_AFTER, "3".parse().unwrap());
        assert!(matches!(
            to_api_error(&s),
            Some(ApiError::RateLimited {
                retry_after_secs: Some(3),
                ..
            })
        ));
    }

    #[test]
    fn the_sidecars_own_credential_problem_is_not_blamed_on_the_app() {
        for s in [
            Status::unauthenticated("bad token"),
            Status::permission_denied("no"),
        ] {
            let e = to_api_error(&s).expect("a refusal, not a reason to fail static");
            assert!(e.status().is_server_error(), "{:?}", e.status());
            assert_ne!(e.status(), StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn an_unreachable_control_plane_is_no_refusal() {
        assert!(to_api_error(&Status::unavailable("down")).is_none());
        assert!(to_api_error(&Status::deadline_exceeded("slow")).is_none());
    }
}
