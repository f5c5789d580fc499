//! The keys file parser (`--port-keys`, `--admin-keys`): arbitrary text.
#![no_main]

use facegate_core::keys::KeyRing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file is read as UTF-8 first (`read_to_string`); other bytes never
    // reach the parser.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ring) = KeyRing::parse(text)
    {
        let _ = ring.identify("token");
    }
});
