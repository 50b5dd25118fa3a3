//! Download speed of the hub client against Python's `huggingface_hub`, both fetching the same
//! model (about 1 GB of random bytes in four safetensors shards, plus its JSON files) from the
//! same local fake hub in the same run, each into a fresh cache, alternating runs.
//!
//! `cargo bench --bench hub_download` (needs `python3` with `huggingface_hub`). Environment:
//! `HUB_BENCH_MB` (total shard size, default 1024), `HUB_BENCH_RUNS` (default 3).

use arbiter::engine::hub::{Hub, HubSettings, RepoId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const SHARDS: usize = 4;

struct File {
    name: String,
    bytes: Arc<Vec<u8>>,
    sha256: String,
    lfs: bool,
}

type Files = Arc<HashMap<String, File>>;

/// A status line, headers and body.
type Answer = (&'static str, Vec<(String, String)>, Option<Arc<Vec<u8>>>);

fn main() {
    let total_mb: usize = env_or("HUB_BENCH_MB", 1024);
    let runs: usize = env_or("HUB_BENCH_RUNS", 3);
    let files = Arc::new(model_files(total_mb));
    let total: u64 = files.values().map(|f| f.bytes.len() as u64).sum();
    // The hub and, on another port, the storage host large files redirect to (as on the hub;
    // clients follow a redirect within the hub's own host for metadata).
    let hub = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let storage = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let endpoint = format!("http://{}", hub.local_addr().expect("local address"));
    let storage_origin = format!("http://{}", storage.local_addr().expect("local address"));
    for listener in [hub, storage] {
        let files = files.clone();
        let origin = storage_origin.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let files = files.clone();
                let origin = origin.clone();
                std::thread::spawn(move || serve(conn, &files, &origin));
            }
        });
    }
    let work = tempfile::tempdir().expect("a temporary folder");
    println!(
        "hub_download: {} files, {:.1} MB, {runs} runs each, loopback fake hub",
        files.len(),
        total as f64 / 1e6
    );
    let mut ours = Vec::new();
    let mut python = Vec::new();
    for run in 0..runs {
        let cache = work.path().join(format!("arbiter-{run}"));
        let mut settings = HubSettings::new(&endpoint, &cache);
        settings.proxy_from_env = false;
        let start = Instant::now();
        let model = Hub::new(settings)
            .download(
                &RepoId::parse("bench/model").expect("repo id"),
                None,
                &mut |_| {},
            )
            .expect("the Arbiter download");
        let t = start.elapsed();
        assert_eq!(model.weights.len(), SHARDS);
        ours.push(t);
        let _ = std::fs::remove_dir_all(&cache);

        let cache = work.path().join(format!("python-{run}"));
        python.push(python_download(&endpoint, &cache, &files));
        let _ = std::fs::remove_dir_all(&cache);
        println!(
            "  run {run}: arbiter {:.2} s, huggingface_hub {:.2} s",
            t.as_secs_f64(),
            python[run].as_secs_f64()
        );
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let rate = |d: Duration| total as f64 / 1e6 / d.as_secs_f64();
    println!(
        "arbiter (hf-hub 1.0): median {:.2} s ({:.0} MB/s), best {:.2} s",
        median(&ours).as_secs_f64(),
        rate(median(&ours)),
        best(&ours).as_secs_f64()
    );
    println!(
        "huggingface_hub:      median {:.2} s ({:.0} MB/s), best {:.2} s",
        median(&python).as_secs_f64(),
        rate(median(&python)),
        best(&python).as_secs_f64()
    );
    println!(
        "speed ratio arbiter / huggingface_hub (median): {:.2}x",
        median(&python).as_secs_f64() / median(&ours).as_secs_f64()
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Python's `snapshot_download` of the same files, timed inside Python (its start-up and
/// imports are not counted).
fn python_download(endpoint: &str, cache: &std::path::Path, files: &Files) -> Duration {
    let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
    names.sort();
    let script = format!(
        "import time\nfrom huggingface_hub import snapshot_download\nt = time.perf_counter()\n\
         snapshot_download('bench/model', allow_patterns={names:?})\n\
         print(time.perf_counter() - t)\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("python3 with huggingface_hub (pip install huggingface_hub)");
    assert!(
        out.status.success(),
        "huggingface_hub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seconds: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the time Python printed");
    Duration::from_secs_f64(seconds)
}

/// Config, tokenizer, index and `SHARDS` shards of random bytes (xorshift, fixed seed).
fn model_files(total_mb: usize) -> HashMap<String, File> {
    let shard_len = total_mb * 1_000_000 / SHARDS;
    let mut out = HashMap::new();
    let mut add = |name: String, bytes: Vec<u8>, lfs: bool| {
        let sha256 = hex(&Sha256::digest(&bytes));
        out.insert(
            name.clone(),
            File {
                name,
                bytes: Arc::new(bytes),
                sha256,
                lfs,
            },
        );
    };
    add(
        "config.json".into(),
        br#"{"architectures":["Qwen2ForCausalLM"]}"#.to_vec(),
        false,
    );
    add(
        "tokenizer.json".into(),
        br#"{"version":"1.0","model":{"type":"BPE","vocab":{},"merges":[]}}"#.to_vec(),
        false,
    );
    let mut map = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 1..=SHARDS {
        let name = format!("model-{i:05}-of-{SHARDS:05}.safetensors");
        map.push(format!("\"w{i}\":\"{name}\""));
        let mut bytes = Vec::with_capacity(shard_len + 8);
        while bytes.len() < shard_len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(shard_len);
        add(name, bytes, true);
    }
    add(
        "model.safetensors.index.json".into(),
        format!("{{\"weight_map\":{{{}}}}}", map.join(",")).into_bytes(),
        false,
    );
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A minimal hub: model info, the tree, `paths-info`, and `resolve` (LFS files redirect, with an absolute
/// URL as the hub gives, to `/blobs/`).
/// One request per connection.
fn serve(conn: TcpStream, files: &Files, storage: &str) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let path = target.split('?').next().unwrap_or("");
    let mut head = |status: &str, headers: &[(String, String)], len: usize| {
        let mut out =
            format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {len}\r\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        writer.write_all(out.as_bytes()).is_ok()
    };
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let (status, headers, payload): Answer = if path
        .starts_with("/api/models/bench/model/paths-info/")
    {
        let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let entries: Vec<serde_json::Value> = asked["paths"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| files.get(p.as_str()?))
                .map(|f| serde_json::json!({"type":"file","path":f.name,"size":f.bytes.len(),"oid":&f.sha256[..40]}))
                .collect();
        ("200 OK", vec![], Some(Arc::new(json(entries.into()))))
    } else if path.starts_with("/api/models/bench/model/tree/") {
        // Python's snapshot_download lists the tree; one page.
        let entries: Vec<serde_json::Value> = files
                .values()
                .map(|f| {
                    let mut v = serde_json::json!({"type":"file","path":f.name,"size":f.bytes.len(),"oid":&f.sha256[..40]});
                    if f.lfs {
                        v["lfs"] = serde_json::json!({"oid":f.sha256,"size":f.bytes.len(),"pointerSize":134});
                    }
                    v
                })
                .collect();
        ("200 OK", vec![], Some(Arc::new(json(entries.into()))))
    } else if path.starts_with("/api/models/bench/model") {
        let siblings: Vec<serde_json::Value> = files
            .values()
            .map(|f| serde_json::json!({"rfilename": f.name}))
            .collect();
        let info = serde_json::json!({"id":"bench/model","sha":COMMIT,"siblings":siblings});
        ("200 OK", vec![], Some(Arc::new(json(info))))
    } else if let Some(sha) = path.strip_prefix("/blobs/") {
        match files.values().find(|f| f.sha256 == sha) {
            Some(f) => ("200 OK", vec![], Some(f.bytes.clone())),
            None => ("404 Not Found", vec![], None),
        }
    } else if let Some(rest) = path.strip_prefix("/bench/model/resolve/") {
        let name = rest.split_once('/').map_or("", |(_, n)| n);
        match files.get(name) {
            Some(f) if f.lfs => (
                "302 Found",
                vec![
                    ("X-Repo-Commit".into(), COMMIT.into()),
                    ("X-Linked-Etag".into(), format!("\"{}\"", f.sha256)),
                    ("X-Linked-Size".into(), f.bytes.len().to_string()),
                    ("ETag".into(), "\"pointer\"".into()),
                    ("Location".into(), format!("{storage}/blobs/{}", f.sha256)),
                ],
                None,
            ),
            Some(f) => (
                "200 OK",
                vec![
                    ("X-Repo-Commit".into(), COMMIT.into()),
                    ("ETag".into(), format!("\"{}\"", &f.sha256[..40])),
                ],
                Some(f.bytes.clone()),
            ),
            None => (
                "404 Not Found",
                vec![
                    ("X-Repo-Commit".into(), COMMIT.into()),
                    ("X-Error-Code".into(), "EntryNotFound".into()),
                ],
                None,
            ),
        }
    } else {
        ("404 Not Found", vec![], None)
    };
    let len = payload.as_ref().map_or(0, |p| p.len());
    if !head(status, &headers, len) || method == "HEAD" {
        return;
    }
    if let Some(p) = payload {
        for chunk in p.chunks(1 << 20) {
            if writer.write_all(chunk).is_err() {
                return;
            }
        }
    }
    let _ = writer.flush();
}
