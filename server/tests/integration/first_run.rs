//! A newcomer's first run of the real binary: what it says on stderr, and
//! what the tools they reach for (grpcurl, grpc_cli) can ask of it.

use crate::common::*;

use tonic::transport::Channel;

/// The services a listener advertises through `v1alpha` reflection, and
/// whether it describes `symbol` (the file that defines it, as grpcurl
/// asks before a call).
async fn v1alpha_reflection(addr: &str, symbol: &str) -> (Vec<String>, bool) {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ask = |m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = [
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(symbol.into())),
    ];
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let described = matches!(
        answers.message().await.unwrap().unwrap().message_response,
        Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()
    );
    let names = list.service.into_iter().map(|s| s.name).collect();
    (names, described)
}

#[tokio::test(flavor = "multi_thread")]
async fn both_listeners_answer_v1alpha_reflection_with_what_they_serve() {
    let f = fixture();
    let server = Server::start(&f.path, &["--no-audit"]);
    // The same services as v1 reflection advertises (tests/grpc.rs).
    let back_office: &[&str] = &[
        "facegate.v1.Manifests",
        "facegate.v1.Encounters",
        "facegate.v1.Privacy",
    ];
    for (addr, want, also) in [
        (&server.addr, "facegate.v1.Matcher", &[][..]),
        (&server.admin_addr, "facegate.v1.GalleryAdmin", back_office),
    ] {
        let (mut names, described) = v1alpha_reflection(addr, want).await;
        names.sort();
        let mut expected = vec![want, "grpc.health.v1.Health"];
        expected.extend(also.iter().copied());
        expected.sort();
        assert_eq!(names, expected, "{addr}");
        assert!(described, "{want} is not described on {addr}");
    }
}

/// Starts `facegate serve` on `gallery` (ephemeral ports, no audit, info
/// logs) with stderr to a file, as `facegate serve 2>log` would; `env`
/// sets variables, `None` removes one. Returns the child, its stdout, and
/// the log file.
fn start_logging_to_a_file(
    gallery: &std::path::Path,
    env: &[(&str, Option<&std::ffi::OsStr>)],
    log: &std::path::Path,
) -> std::process::Child {
    let data = log.with_extension("data");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"));
    cmd.args(serve_args(gallery))
        .args(["--no-audit", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    cmd.spawn().unwrap()
}

/// Reads the child's stdout until it says it is ready.
fn wait_until_listening(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("facegate listening on ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
    }
}

/// SIGTERM, then the exit status.
fn stop(mut child: std::process::Child) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap()
}

#[test]
fn a_log_that_is_not_a_terminal_gets_no_colour_codes() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut child = start_logging_to_a_file(&f.path, &[("NO_COLOR", None)], &log);
    wait_until_listening(&mut child);
    let exit = stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{exit:?}: {text}");
    assert!(text.contains("gallery open"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log: {text:?}"
    );
}

#[cfg(unix)]
#[test]
fn without_xdg_runtime_dir_the_gpu_driver_is_quiet_and_nothing_is_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (log, tmp) = (dir.path().join("log"), dir.path().join("tmp"));
    std::fs::create_dir(&tmp).unwrap();
    let env = [("XDG_RUNTIME_DIR", None), ("TMPDIR", Some(tmp.as_os_str()))];
    // --engine auto (the default) has the driver look for GPUs.
    let mut child = start_logging_to_a_file(&f.path, &env, &log);
    wait_until_listening(&mut child);
    let made: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let mode = std::fs::metadata(&made[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{:?} is not private", made[0]);
    assert!(stop(child).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("XDG_RUNTIME_DIR"), "{text}");
    assert!(text.contains("gallery open"), "{text}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `facegate serve` on a gallery file that does not exist, stderr to a
/// file: the exit status and what the file says.
fn start_without_the_gallery(extra: &[&str]) -> (std::process::ExitStatus, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (log, missing) = (dir.path().join("log"), dir.path().join("missing.fgal"));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&missing))
        .args(["--no-audit", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(extra)
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    (status, text, missing.display().to_string())
}

#[test]
fn a_missing_gallery_is_said_once_with_its_cause_once() {
    let (status, text, missing) = start_without_the_gallery(&[]);
    assert!(!status.success());
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches(&missing).count(), 1, "{text}");
    assert!(text.starts_with("error: opening the gallery: "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log: {text:?}"
    );

    // In JSON lines, once too, and every line is JSON.
    let (status, text, _) = start_without_the_gallery(&["--log-json"]);
    assert!(!status.success());
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect(line);
    }
}
