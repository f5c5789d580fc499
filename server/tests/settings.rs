//! Where each setting comes from: flags over `FACEGATE_*` variables over the
//! TOML file over the defaults. Its own test binary with one test, because
//! it sets environment variables, which no other thread may read meanwhile.

use facegate_server::config::Settings;

#[test]
fn flags_beat_variables_which_beat_the_file_which_beats_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "max_top_k = 50\ndrain_seconds = 5\nqueue_capacity = 9\nno_audit = true\n",
    )
    .unwrap();
    let config = f.to_str().unwrap();
    // SAFETY: this binary's only test, and it starts no thread: nothing
    // else reads the environment while it changes.
    unsafe {
        std::env::set_var("FACEGATE_MAX_TOP_K", "20");
        std::env::set_var("FACEGATE_DRAIN_SECONDS", "7");
        // A switch that is off in the environment leaves the file's value,
        // as it always has: only the file turns the audit trail off here.
        std::env::set_var("FACEGATE_NO_AUDIT", "false");
    }
    let s = Settings::from_args(["--config", config, "--max-top-k", "10"]).unwrap();
    assert_eq!(
        s.max_top_k, 10,
        "the flag wins over the variable and the file"
    );
    assert_eq!(s.drain_seconds, 7, "the variable wins over the file");
    assert_eq!(s.queue_capacity, 9, "the file wins over the default");
    assert_eq!(s.max_queue_wait_ms, 250, "the default fills the rest");
    assert_eq!(s.audit_dir, None);

    // The file can come from a variable too.
    unsafe { std::env::set_var("FACEGATE_CONFIG", config) };
    let s = Settings::from_args(std::iter::empty::<&str>()).unwrap();
    assert_eq!((s.max_top_k, s.drain_seconds, s.queue_capacity), (20, 7, 9));

    // Without a file, variables beat the defaults, and the defaults read none.
    unsafe {
        std::env::remove_var("FACEGATE_CONFIG");
        std::env::set_var("FACEGATE_NO_AUDIT", "true");
    }
    let s = Settings::from_args(std::iter::empty::<&str>()).unwrap();
    assert_eq!((s.max_top_k, s.drain_seconds, s.audit_dir), (20, 7, None));
    let d = Settings::defaults();
    assert_eq!((d.max_top_k, d.drain_seconds, d.no_audit), (100, 30, false));
}
