//! Request deadlines from the `grpc-timeout` header.
//!
//! tonic itself cancels a handler when the client's timeout expires, but it
//! answers CANCELLED; facegate stops waiting a little earlier (by [`MARGIN`])
//! so that the client is told DEADLINE_EXCEEDED and never gets a late answer.
//! A scan already running on the engine finishes and its result is dropped
//! (the batching dispatcher will drop expired requests before they start).

use std::time::{Duration, Instant};

/// How long before the client's deadline facegate stops waiting for the engine.
pub const MARGIN: Duration = Duration::from_millis(2);

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

/// The instant by which a request must be answered, if the client set one.
pub fn from_metadata(md: &tonic::metadata::MetadataMap, arrived: Instant) -> Option<Instant> {
    let timeout = parse_grpc_timeout(md.get("grpc-timeout")?.to_str().ok()?)?;
    Some(arrived + timeout.saturating_sub(MARGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

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
