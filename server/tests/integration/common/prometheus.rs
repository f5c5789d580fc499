//! A real Prometheus (the Debian package's binary) scraping one target
//! with a rule file, for the tests of the dashboards and alerts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `promtool check rules RULES` and `promtool test rules TESTS` in
/// `dir` (the repository's alert rules): the file is valid and each alert
/// fires when its unit tests say, and only then.
pub fn promtool(dir: &Path, rules: &str, tests: &str) {
    for args in [["check", "rules", rules], ["test", "rules", tests]] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool {args:?}: {said}");
    }
}

/// A Prometheus process, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// Its HTTP API, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `target` (host:port of a
    /// `/metrics`) every second as job `facegate`, evaluating `rules`.
    pub fn start(dir: &Path, target: &str, rules: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{rules:?}]\nscrape_configs:\n  - job_name: facegate\n    static_configs: [{{targets: [{target:?}]}}]\n"
            ),
        )
        .unwrap();
        let port = super::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test.sh installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits (up to a minute) until Prometheus answers and the last minute
    /// holds `samples` scrapes of the target, enough for 1m rates.
    pub async fn wait_for_scrapes(&self, samples: usize) {
        let ready = Instant::now();
        let q = form_urlencoded::byte_serialize(b"count_over_time(up{job=\"facegate\"}[1m])");
        let url = format!("{}/api/v1/query?query={}", self.url, q.collect::<String>());
        loop {
            let scrapes = http_try(&url)
                .await
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()?
                        .parse::<f64>()
                        .ok()
                });
            if scrapes.is_some_and(|n| n >= samples as f64) {
                return;
            }
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "prometheus never scraped the target"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The rules Prometheus loaded (its first rule group), as its API
    /// reports them: name, query, health, state.
    pub async fn rules(&self) -> Vec<serde_json::Value> {
        let (_, body) = http_try(&format!("{}/api/v1/rules", self.url))
            .await
            .expect("prometheus answers");
        let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
        rules["data"]["groups"][0]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts every panel expression of the dashboard JSON at `path`
    /// returns at least one series; returns how many were checked.
    pub async fn check_dashboard(&self, path: &Path) -> usize {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for panel in dash["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(
                    !query(&self.url, expr).await.is_empty(),
                    "panel {:?}: {expr} returned no series",
                    panel["title"]
                );
                checked += 1;
            }
        }
        checked
    }
}

/// GETs a URL, returning the status line's code and the body (no assertion).
pub async fn http_try(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.get(9..12)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n")?.1;
    // Prometheus answers with chunked encoding: drop the chunk-size lines.
    let body = if buf
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(tail.get(..n)?);
            rest = tail.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((code, body))
}

/// Runs an instant query against Prometheus and returns the result vector.
pub async fn query(prom: &str, q: &str) -> Vec<serde_json::Value> {
    let enc: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (code, body) = http_try(&format!("{prom}/api/v1/query?query={enc}"))
        .await
        .expect("prometheus answers");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("success")),
        "{q}: {body}"
    );
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}
