//! Request deadlines from the `grpc-timeout` header.
//!
//! tonic itself cancels a handler when the client's timeout expires, but it
//! answers CANCELLED; facegate stops waiting a little earlier (by [`margin`])
//! so that the client is told DEADLINE_EXCEEDED and never gets a late answer.
//! A scan already running on the engine finishes and its result is dropped
//! (the batching dispatcher will drop expired requests before they start).

use std::time::{Duration, Instant};

/// How long before the client's deadline facegate stops waiting for the
/// engine: a tenth of the budget, within 2..=50 ms, so that the refusal
/// travels back before the client's own timer fires.
pub fn margin(budget: Duration) -> Duration {
    (budget / 10).clamp(Duration::from_millis(2), Duration::from_millis(50))
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When a request arrived and by when it must be answered.
///
/// Stamped by [`stamp`] as the transport hands the request over (the moment
/// tonic's own timeout starts), not when the handler first runs, which under
/// load can be much later.
#[derive(Debug, Clone, Copy)]
pub struct RequestClock {
    /// Arrival at the service.
    pub arrived: Instant,
    /// The client's deadline less [`margin`], if it set one.
    pub deadline: Option<Instant>,
}

/// A request whose deadline passed before it could be served (mapped to
/// DEADLINE_EXCEEDED in `status.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline passed before the request could be served")]
pub struct DeadlinePassed;

impl RequestClock {
    /// The clock stamped on `req`, or one started now if none was.
    pub fn of<T>(req: &tonic::Request<T>) -> RequestClock {
        req.extensions()
            .get::<RequestClock>()
            .copied()
            .unwrap_or_else(|| RequestClock {
                arrived: Instant::now(),
                deadline: None,
            })
    }

    /// [`DeadlinePassed`] if the deadline has already passed.
    pub fn check(&self) -> Result<(), DeadlinePassed> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(DeadlinePassed),
            _ => Ok(()),
        }
    }
}

/// Interceptor: stamps every request with its [`RequestClock`].
pub fn stamp(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let arrived = Instant::now();
    let deadline = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|t| arrived + t.saturating_sub(margin(t)));
    req.extensions_mut()
        .insert(RequestClock { arrived, deadline });
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_scales_with_the_budget() {
        assert_eq!(margin(Duration::from_millis(5)), Duration::from_millis(2));
        assert_eq!(
            margin(Duration::from_millis(200)),
            Duration::from_millis(20)
        );
        assert_eq!(margin(Duration::from_secs(10)), Duration::from_millis(50));
    }

    #[test]
    fn parses_every_unit_and_refuses_garbage() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "5", "5x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
