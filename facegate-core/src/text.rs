//! The one check every free-text field of a record passes (manifests'
//! carriers and ports, encounters' ports, lanes and notes): bounded, no
//! control characters (they break logs and CSV), no surrounding spaces.

/// What is wrong with `value` as a field of at most `max` bytes (empty
/// allowed unless `required`), or `None` when it is fine.
pub fn field_problem(value: &str, max: usize, required: bool) -> Option<String> {
    if value.is_empty() {
        return required.then(|| "is empty".to_string());
    }
    if value.len() > max {
        Some(format!("is {} bytes, at most {max}", value.len()))
    } else if value.chars().any(char::is_control) {
        Some("contains a control character".to_string())
    } else if value.trim() != value {
        Some("has leading or trailing whitespace".to_string())
    } else {
        None
    }
}
