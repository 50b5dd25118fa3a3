//! The hub client against a fake hub on 127.0.0.1: the API routes (model info, `paths-info`),
//! `resolve` with the headers the real hub sends, large files redirected to a second "storage"
//! origin, and injected faults (dropped connections, 404s, corrupt bytes, gated repositories).
//! Every request is recorded, so a test can assert that none was made.

mod common;

use arbiter::engine::hub::{DownloadEvent, Hub, HubError, HubSettings, ModelFiles, RepoId, Token};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COMMIT: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const SHARD1: &str = "model-00001-of-00002.safetensors";
const SHARD2: &str = "model-00002-of-00002.safetensors";

#[derive(Clone)]
struct FakeFile {
    name: String,
    bytes: Vec<u8>,
    /// Served like an LFS file: `X-Linked-Etag` (sha256) and a redirect to storage.
    lfs: bool,
}

impl FakeFile {
    fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.bytes))
    }

    /// Stands in for the git blob id of a small file.
    fn etag(&self) -> String {
        if self.lfs {
            self.sha256()
        } else {
            self.sha256()[..40].to_string()
        }
    }
}

#[derive(Clone)]
struct FakeRepo {
    commit: String,
    files: Vec<FakeFile>,
    /// Only this token may read it; others get the hub's "gated" answer.
    gated_for: Option<String>,
}

#[derive(Debug, Clone)]
struct Seen {
    storage: bool,
    method: String,
    path: String,
    range: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Faults {
    /// File name -> (bytes sent before the connection drops, how many more times).
    drop_after: HashMap<String, (usize, usize)>,
    corrupt: HashSet<String>,
    /// Listed by the API but 404 on `resolve`.
    vanished: HashSet<String>,
    /// Answers a ranged request with the whole file (200), as some proxies do.
    ignore_range: HashSet<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, FakeRepo>,
    seen: Vec<Seen>,
    faults: Faults,
    hub_origin: String,
    storage_origin: String,
}

struct FakeHub {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    addrs: Vec<std::net::SocketAddr>,
}

impl FakeHub {
    fn start() -> FakeHub {
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let storage = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = Arc::new(Mutex::new(State {
            hub_origin: format!("http://{}", hub.local_addr().unwrap()),
            storage_origin: format!("http://{}", storage.local_addr().unwrap()),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let addrs = vec![hub.local_addr().unwrap(), storage.local_addr().unwrap()];
        for (listener, is_storage) in [(hub, false), (storage, true)] {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || serve(conn, is_storage, &state));
                }
            });
        }
        FakeHub { state, stop, addrs }
    }

    fn endpoint(&self) -> String {
        self.state.lock().unwrap().hub_origin.clone()
    }

    fn add_repo(&self, id: &str, repo: FakeRepo) {
        self.state
            .lock()
            .unwrap()
            .repos
            .insert(id.to_string(), repo);
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn clear_seen(&self) {
        self.state.lock().unwrap().seen.clear();
    }

    fn settings(&self, cache: &Path) -> HubSettings {
        let mut s = HubSettings::new(&self.endpoint(), cache);
        s.proxy_from_env = false;
        s.retries = 2;
        s.retry_delay = Duration::from_millis(10);
        s.read_timeout = Duration::from_secs(10);
        s
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for addr in &self.addrs {
            let _ = TcpStream::connect(addr);
        }
    }
}

fn serve(mut conn: TcpStream, storage: bool, state: &Mutex<State>) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let seen = Seen {
        storage,
        method: method.clone(),
        path: target.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
        body,
    };
    let response = {
        let mut st = state.lock().unwrap();
        st.seen.push(seen.clone());
        route(&mut st, &seen)
    };
    let head_only = method == "HEAD";
    let mut out = format!("HTTP/1.1 {}\r\nConnection: close\r\n", response.status);
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", response.length));
    let _ = conn.write_all(out.as_bytes());
    if !head_only {
        let body = match response.drop_after {
            Some(n) => &response.body[..n.min(response.body.len())],
            None => &response.body[..],
        };
        let _ = conn.write_all(body);
    }
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

struct Reply {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Content-Length announced (the full body, even when the connection will drop).
    length: usize,
    drop_after: Option<usize>,
}

fn reply(status: &'static str, headers: Vec<(String, String)>, body: Vec<u8>) -> Reply {
    Reply {
        status,
        headers,
        length: body.len(),
        body,
        drop_after: None,
    }
}

fn error_reply(status: &'static str, code: &str) -> Reply {
    reply(
        status,
        vec![("X-Error-Code".into(), code.into())],
        format!("{{\"error\":\"{code}\"}}").into_bytes(),
    )
}

fn route(st: &mut State, req: &Seen) -> Reply {
    let path = req.path.split('?').next().unwrap_or("").to_string();
    if req.storage {
        // /blobs/{sha256}: the storage host, no token expected.
        let sha = path.trim_start_matches("/blobs/");
        let file = st
            .repos
            .values()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.sha256() == sha)
            .cloned();
        return match file {
            Some(f) => serve_bytes(st, &f, req),
            None => error_reply("404 Not Found", "EntryNotFound"),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        if let Some((repo_id, rev)) = rest.split_once("/paths-info/") {
            return paths_info(st, req, repo_id, rev);
        }
        // Like the hub: sizes and LFS details only when asked with `blobs=true`.
        let blobs = req.path.contains("blobs=true");
        let (repo_id, rev) = rest.split_once("/revision/").unwrap_or((rest, "main"));
        let Some(repo) = st.repos.get(repo_id).cloned() else {
            return error_reply("404 Not Found", "RepoNotFound");
        };
        if let Some(r) = gate(&repo, req) {
            return r;
        }
        if rev != "main" && rev != repo.commit {
            return error_reply("404 Not Found", "RevisionNotFound");
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|f| {
                if !blobs {
                    return serde_json::json!({"rfilename": f.name});
                }
                let mut v = serde_json::json!({"rfilename": f.name, "size": f.bytes.len()});
                if f.lfs {
                    v["lfs"] = serde_json::json!({"sha256": f.sha256(), "size": f.bytes.len(), "pointerSize": 134});
                }
                v
            })
            .collect();
        let body = serde_json::json!({"id": repo_id, "sha": repo.commit, "siblings": siblings});
        return reply(
            "200 OK",
            vec![("Content-Type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        );
    }
    // /{owner}/{name}/resolve/{rev}/{file}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() == 5 && segs[2] == "resolve" {
        let repo_id = format!("{}/{}", segs[0], segs[1]);
        let Some(repo) = st.repos.get(&repo_id).cloned() else {
            return error_reply("404 Not Found", "RepoNotFound");
        };
        if let Some(r) = gate(&repo, req) {
            return r;
        }
        let file_name = segs[4];
        let commit_header = ("X-Repo-Commit".to_string(), repo.commit.clone());
        let file = repo.files.iter().find(|f| f.name == file_name).cloned();
        let file = match file {
            Some(f) if !st.faults.vanished.contains(file_name) => f,
            _ => {
                let mut r = error_reply("404 Not Found", "EntryNotFound");
                r.headers.push(commit_header);
                return r;
            }
        };
        if file.lfs {
            let location = format!(
                "{}/blobs/{}?X-Signature=s3cr3t",
                st.storage_origin,
                file.sha256()
            );
            return Reply {
                status: "302 Found",
                headers: vec![
                    commit_header,
                    ("X-Linked-Etag".into(), format!("\"{}\"", file.sha256())),
                    ("X-Linked-Size".into(), file.bytes.len().to_string()),
                    ("ETag".into(), "\"pointer-etag\"".into()),
                    ("Location".into(), location),
                ],
                body: Vec::new(),
                length: 0,
                drop_after: None,
            };
        }
        let mut r = serve_bytes(st, &file, req);
        r.headers.push(commit_header);
        r.headers
            .push(("ETag".into(), format!("\"{}\"", file.etag())));
        return r;
    }
    error_reply("404 Not Found", "NotFound")
}

/// `POST /api/models/{repo}/paths-info/{rev}` with `{"paths": [...]}`, answered as the hub
/// does (the LFS sha256 is under `lfs.oid`).
fn paths_info(st: &State, req: &Seen, repo_id: &str, rev: &str) -> Reply {
    let Some(repo) = st.repos.get(repo_id).cloned() else {
        return error_reply("404 Not Found", "RepoNotFound");
    };
    if let Some(r) = gate(&repo, req) {
        return r;
    }
    if rev != "main" && rev != repo.commit {
        return error_reply("404 Not Found", "RevisionNotFound");
    }
    let asked: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let asked: Vec<&str> = asked["paths"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    let entries: Vec<serde_json::Value> = repo
        .files
        .iter()
        .filter(|f| asked.contains(&f.name.as_str()))
        .map(|f| {
            let mut v = serde_json::json!({"type": "file", "path": f.name, "size": f.bytes.len(), "oid": f.etag()});
            if f.lfs {
                v["lfs"] = serde_json::json!({"oid": f.sha256(), "size": f.bytes.len(), "pointerSize": 134});
            }
            v
        })
        .collect();
    reply(
        "200 OK",
        vec![("Content-Type".into(), "application/json".into())],
        serde_json::Value::Array(entries).to_string().into_bytes(),
    )
}

fn gate(repo: &FakeRepo, req: &Seen) -> Option<Reply> {
    let allowed = repo.gated_for.as_ref()?;
    let ok = req.authorization.as_deref() == Some(format!("Bearer {allowed}").as_str());
    (!ok).then(|| error_reply("403 Forbidden", "GatedRepo"))
}

fn serve_bytes(st: &mut State, file: &FakeFile, req: &Seen) -> Reply {
    let mut bytes = file.bytes.clone();
    if st.faults.corrupt.contains(&file.name) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
    }
    let total = bytes.len();
    // `bytes=START-` or `bytes=START-END` (END inclusive).
    let range = req
        .range
        .as_deref()
        .filter(|_| !st.faults.ignore_range.contains(&file.name))
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(start, end)| {
            let start: usize = start.parse().unwrap_or(0);
            let end: usize = end.parse().map_or(total, |e: usize| e + 1);
            (start.min(total), end.min(total))
        });
    let mut r = match range {
        Some((start, end)) => reply(
            "206 Partial Content",
            vec![(
                "Content-Range".into(),
                format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
            )],
            bytes[start..end.max(start)].to_vec(),
        ),
        None => reply("200 OK", vec![], bytes),
    };
    // Faults hit the transfer itself, not a HEAD asking about it.
    if req.method == "GET" {
        if let Some((after, times)) = st.faults.drop_after.get_mut(&file.name) {
            if *times > 0 {
                *times -= 1;
                r.drop_after = Some(*after);
            }
        }
    }
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small safetensors file: one f32 tensor of `n` values derived from `seed`.
fn safetensors(name: &str, n: usize, seed: u32) -> Vec<u8> {
    let header = format!(
        "{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{n}],\"data_offsets\":[0,{}]}}}}",
        n * 4
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    let mut x = seed;
    for _ in 0..n {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        out.extend_from_slice(&((x >> 8) as f32 / 16_777_216.0).to_le_bytes());
    }
    out
}

fn text_file(name: &str, text: &str) -> FakeFile {
    FakeFile {
        name: name.into(),
        bytes: text.as_bytes().to_vec(),
        lfs: false,
    }
}

/// A tiny sharded model: configs, a tokenizer, an index and two LFS shards (~400 kB and ~100 kB).
fn tiny_repo() -> FakeRepo {
    let index = format!(
        "{{\"metadata\":{{\"total_size\":2000000}},\"weight_map\":{{\"model.embed_tokens.weight\":\"{SHARD1}\",\"lm_head.weight\":\"{SHARD2}\"}}}}"
    );
    FakeRepo {
        commit: COMMIT.into(),
        gated_for: None,
        files: vec![
            text_file(
                "config.json",
                r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":16,"num_hidden_layers":1,"vocab_size":32,"sliding_window":null}"#,
            ),
            text_file(
                "tokenizer.json",
                r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#,
            ),
            text_file(
                "tokenizer_config.json",
                r#"{"chat_template":"{{ messages[0]['content'] }}","eos_token":"<|im_end|>"}"#,
            ),
            text_file("model.safetensors.index.json", &index),
            text_file("README.md", "# tiny\n"),
            FakeFile {
                name: "pytorch_model.bin".into(),
                bytes: b"pickle bytes that must never be fetched".to_vec(),
                lfs: true,
            },
            FakeFile {
                name: SHARD1.into(),
                bytes: safetensors("model.embed_tokens.weight", 100_000, 1),
                lfs: true,
            },
            FakeFile {
                name: SHARD2.into(),
                bytes: safetensors("lm_head.weight", 25_000, 2),
                lfs: true,
            },
        ],
    }
}

fn file_bytes(repo: &FakeRepo, name: &str) -> Vec<u8> {
    repo.files
        .iter()
        .find(|f| f.name == name)
        .unwrap()
        .bytes
        .clone()
}

fn tiny() -> RepoId {
    RepoId::parse("org/tiny").unwrap()
}

fn resolve_requests(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.storage || s.path.contains("/resolve/"))
        .collect()
}

fn collect(events: &mut Vec<DownloadEvent>) -> impl FnMut(DownloadEvent) + '_ {
    |e| events.push(e)
}

#[test]
fn downloads_into_the_python_cache_layout_then_hits_the_cache() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(server.settings(cache.path()));

    let mut events = Vec::new();
    let model = hub
        .download(&tiny(), None, &mut collect(&mut events))
        .unwrap();

    let root = cache.path().join("models--org--tiny");
    assert_eq!(model.commit, COMMIT);
    assert_eq!(model.dir, root.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(
        model.weights,
        vec![model.dir.join(SHARD1), model.dir.join(SHARD2)]
    );
    assert_eq!(
        model.weight_index,
        Some(model.dir.join("model.safetensors.index.json"))
    );
    assert!(model.tokenizer_config.is_some());
    assert_eq!(model.generation_config, None, "the repo has none");
    assert!(root
        .join(".no_exist")
        .join(COMMIT)
        .join("generation_config.json")
        .is_file());
    for name in [SHARD1, SHARD2, "config.json", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(model.dir.join(name)).unwrap(),
            file_bytes(&repo, name),
            "{name}"
        );
    }
    // Blobs named like huggingface_hub names them, linked relatively from the snapshot.
    let shard1 = repo.files.iter().find(|f| f.name == SHARD1).unwrap();
    assert!(root.join("blobs").join(shard1.sha256()).is_file());
    assert_eq!(
        std::fs::read_link(model.dir.join(SHARD1)).unwrap(),
        Path::new("../../blobs").join(shard1.sha256())
    );
    let config = repo.files.iter().find(|f| f.name == "config.json").unwrap();
    assert!(root.join("blobs").join(config.etag()).is_file());
    assert!(!model.dir.join("pytorch_model.bin").exists());
    assert!(!model.dir.join("README.md").exists());
    let seen = server.seen();
    assert!(
        !seen.iter().any(|s| s.path.contains("pytorch_model.bin")),
        "pickle files are never requested"
    );
    // The shards came from the storage origin (the hub redirected there).
    assert_eq!(
        seen.iter()
            .filter(|s| s.storage && s.method == "GET")
            .count(),
        2
    );

    // Progress: one plan, bytes up to the total, a FileDone per file.
    let total: u64 = [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        SHARD1,
        SHARD2,
    ]
    .iter()
    .map(|n| file_bytes(&repo, n).len() as u64)
    .sum();
    let plan_total = events.iter().find_map(|e| match e {
        DownloadEvent::Plan {
            total_bytes, files, ..
        } => Some((*total_bytes, files.len())),
        _ => None,
    });
    assert_eq!(plan_total, Some((total, 6)));
    let last_done = events.iter().rev().find_map(|e| match e {
        DownloadEvent::Bytes { done, total, .. } => Some((*done, *total)),
        _ => None,
    });
    assert_eq!(last_done, Some((total, total)));
    let done_files = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                DownloadEvent::FileDone {
                    from_cache: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(done_files, 6);
    assert_eq!(model.downloaded_bytes, total);

    // Again: only the revision lookup, no file request at all.
    server.clear_seen();
    let again = hub.download(&tiny(), Some("main"), &mut |_| {}).unwrap();
    assert_eq!(again.weights, model.weights);
    assert_eq!(again.downloaded_bytes, 0);
    let seen = server.seen();
    assert!(resolve_requests(&seen).is_empty(), "{seen:?}");
    assert_eq!(seen.len(), 1);
    // By commit: nothing to ask.
    server.clear_seen();
    hub.download(&tiny(), Some(COMMIT), &mut |_| {}).unwrap();
    assert!(server.seen().is_empty());

    // Listing and deleting.
    let listed = hub.cached_models().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo, tiny());
    assert_eq!(listed[0].size_on_disk, total);
    assert_eq!(
        listed[0].refs,
        vec![("main".to_string(), COMMIT.to_string())]
    );
    assert_eq!(hub.delete(&tiny()).unwrap(), total);
    assert!(!root.exists());
    assert!(hub.cached_models().unwrap().is_empty());
}

#[test]
fn offline_mode_uses_only_the_cache_and_names_what_is_missing() {
    let server = FakeHub::start();
    server.add_repo("org/tiny", tiny_repo());
    let cache = tempfile::tempdir().unwrap();
    let mut offline = server.settings(cache.path());
    offline.offline = true;

    let err = Hub::new(offline.clone())
        .download(&tiny(), None, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, HubError::NotCached { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("org/tiny") && text.contains("HF_HUB_OFFLINE"),
        "{text}"
    );

    let online = Hub::new(server.settings(cache.path()));
    let model = online.download(&tiny(), None, &mut |_| {}).unwrap();
    server.clear_seen();
    let from_cache = Hub::new(offline.clone())
        .download(&tiny(), None, &mut |_| {})
        .unwrap();
    assert_eq!(from_cache.downloaded_bytes, 0);
    assert_eq!(
        ModelFiles {
            downloaded_bytes: model.downloaded_bytes,
            ..from_cache
        },
        model
    );
    assert!(server.seen().is_empty(), "offline mode opened a connection");

    // A shard gone from the cache: offline says which.
    std::fs::remove_file(model.dir.join(SHARD2)).unwrap();
    let err = Hub::new(offline.clone())
        .download(&tiny(), None, &mut |_| {})
        .unwrap_err();
    match &err {
        HubError::NotCached { missing, .. } => assert_eq!(missing, &vec![SHARD2.to_string()]),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(SHARD2));
    assert!(err.to_string().contains("arbiter models download org/tiny"));
    // An unknown revision offline.
    let err = Hub::new(offline)
        .download(&tiny(), Some("v2"), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("refs/v2"), "{err}");

    // An unreachable hub falls back to the cache too, and names the missing shard.
    let mut unreachable = server.settings(cache.path());
    unreachable.endpoint = "http://127.0.0.1:9".into();
    unreachable.retries = 0;
    let err = Hub::new(unreachable.clone())
        .download(&tiny(), None, &mut |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains(SHARD2) && err.to_string().contains("unreachable"),
        "{err}"
    );
    online.download(&tiny(), None, &mut |_| {}).unwrap();
    let back = Hub::new(unreachable)
        .download(&tiny(), None, &mut |_| {})
        .unwrap();
    assert_eq!(back.weights, model.weights);
}

#[test]
fn a_dropped_connection_resumes_where_it_stopped() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    server
        .faults()
        .faults
        .drop_after
        .insert(SHARD1.into(), (150_000, 1));
    let cache = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let model = Hub::new(server.settings(cache.path()))
        .download(&tiny(), None, &mut collect(&mut events))
        .unwrap();
    assert_eq!(
        std::fs::read(&model.weights[0]).unwrap(),
        file_bytes(&repo, SHARD1)
    );

    let gets: Vec<Option<String>> = server
        .seen()
        .iter()
        .filter(|s| s.storage && s.method == "GET" && s.path.contains(&sha_of(&repo, SHARD1)))
        .map(|s| s.range.clone())
        .collect();
    let end = file_bytes(&repo, SHARD1).len() - 1;
    assert_eq!(gets, vec![None, Some(format!("bytes=150000-{end}"))]);
    let retry = events.iter().find_map(|e| match e {
        DownloadEvent::Retry {
            file, resume_from, ..
        } => Some((file.clone(), *resume_from)),
        _ => None,
    });
    assert_eq!(retry, Some((SHARD1.to_string(), 150_000)));
}

#[test]
fn a_server_that_ignores_the_range_gets_a_clean_restart() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    server
        .faults()
        .faults
        .drop_after
        .insert(SHARD1.into(), (120_000, 1));
    server.faults().faults.ignore_range.insert(SHARD1.into());
    let cache = tempfile::tempdir().unwrap();
    let model = Hub::new(server.settings(cache.path()))
        .download(&tiny(), None, &mut |_| {})
        .unwrap();
    // Appending the whole file after the first 120,000 bytes would fail the sha256 check.
    assert_eq!(
        std::fs::read(&model.weights[0]).unwrap(),
        file_bytes(&repo, SHARD1)
    );
    let ranges: Vec<Option<String>> = server
        .seen()
        .iter()
        .filter(|s| s.storage && s.method == "GET" && s.path.contains(&sha_of(&repo, SHARD1)))
        .map(|s| s.range.clone())
        .collect();
    let end = file_bytes(&repo, SHARD1).len() - 1;
    assert_eq!(ranges, vec![None, Some(format!("bytes=120000-{end}"))]);
}

fn sha_of(repo: &FakeRepo, name: &str) -> String {
    repo.files.iter().find(|f| f.name == name).unwrap().sha256()
}

#[test]
fn an_interrupted_run_is_resumed_by_the_next_one() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    server
        .faults()
        .faults
        .drop_after
        .insert(SHARD1.into(), (200_000, 1));
    let cache = tempfile::tempdir().unwrap();
    let mut settings = server.settings(cache.path());
    settings.retries = 0;
    let hub = Hub::new(settings);

    let err = hub.download(&tiny(), None, &mut |_| {}).unwrap_err();
    assert!(matches!(err, HubError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("200000"), "{err}");
    let partial = cache
        .path()
        .join("models--org--tiny/blobs")
        .join(format!("{}.incomplete", sha_of(&repo, SHARD1)));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 200_000);
    let listed = hub.cached_models().unwrap();
    assert_eq!(listed[0].partial_bytes, 200_000);

    server.clear_seen();
    let model = hub.download(&tiny(), None, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(&model.weights[0]).unwrap(),
        file_bytes(&repo, SHARD1)
    );
    assert!(!partial.exists());
    let ranges: Vec<Option<String>> = server
        .seen()
        .iter()
        .filter(|s| s.storage && s.method == "GET" && s.path.contains(&sha_of(&repo, SHARD1)))
        .map(|s| s.range.clone())
        .collect();
    let end = file_bytes(&repo, SHARD1).len() - 1;
    assert_eq!(ranges, vec![Some(format!("bytes=200000-{end}"))]);
}

#[test]
fn missing_repos_and_files_are_clear_errors() {
    let server = FakeHub::start();
    server.add_repo("org/tiny", tiny_repo());
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(server.settings(cache.path()));

    let err = hub
        .download(&RepoId::parse("org/nope").unwrap(), None, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, HubError::RepoNotFound { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("org/nope"));

    let err = hub.download(&tiny(), Some("v9"), &mut |_| {}).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");

    server.faults().faults.vanished.insert(SHARD2.into());
    let err = hub.download(&tiny(), None, &mut |_| {}).unwrap_err();
    match &err {
        HubError::FileNotFound { file, .. } => assert_eq!(file, SHARD2),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(SHARD2));

    // Only pickle weights: refused before anything is fetched.
    let mut pickle_only = tiny_repo();
    pickle_only
        .files
        .retain(|f| !f.name.contains("safetensors"));
    server.add_repo("org/pickled", pickle_only);
    server.clear_seen();
    let err = hub
        .download(&RepoId::parse("org/pickled").unwrap(), None, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, HubError::NotAModel { .. }), "{err}");
    assert!(err.to_string().contains("pytorch_model.bin"), "{err}");
    assert!(resolve_requests(&server.seen()).is_empty());
}

#[test]
fn a_corrupt_file_is_detected_and_not_kept() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    server.faults().faults.corrupt.insert(SHARD2.into());
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(server.settings(cache.path()));

    let err = hub.download(&tiny(), None, &mut |_| {}).unwrap_err();
    match &err {
        HubError::Corrupt { file, expected, .. } => {
            assert_eq!(file, SHARD2);
            assert_eq!(expected, &sha_of(&repo, SHARD2));
        }
        other => panic!("{other}"),
    }
    let blobs = cache.path().join("models--org--tiny/blobs");
    assert!(!blobs.join(sha_of(&repo, SHARD2)).exists());
    assert!(!blobs
        .join(format!("{}.incomplete", sha_of(&repo, SHARD2)))
        .exists());
    let snapshot = cache
        .path()
        .join("models--org--tiny/snapshots")
        .join(COMMIT);
    assert!(!snapshot.join(SHARD2).exists());
    assert!(snapshot.join(SHARD1).exists(), "good files are kept");
    let mut offline = server.settings(cache.path());
    offline.offline = true;
    assert!(Hub::new(offline)
        .download(&tiny(), None, &mut |_| {})
        .is_err());

    server.faults().faults.corrupt.clear();
    let model = hub.download(&tiny(), None, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(&model.weights[1]).unwrap(),
        file_bytes(&repo, SHARD2)
    );
}

#[test]
fn cancel_stops_and_the_next_run_finishes() {
    let server = FakeHub::start();
    server.add_repo("org/tiny", tiny_repo());
    let cache = tempfile::tempdir().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let hub = Hub::new(server.settings(cache.path())).with_cancel(flag.clone());
    let err = hub
        .download(&tiny(), None, &mut |e| {
            if matches!(e, DownloadEvent::FileDone { .. }) {
                flag.store(true, Ordering::SeqCst);
            }
        })
        .unwrap_err();
    assert!(matches!(err, HubError::Cancelled { .. }), "{err}");
    flag.store(false, Ordering::SeqCst);
    hub.download(&tiny(), None, &mut |_| {}).unwrap();
}

#[test]
fn settings_from_the_environment_reach_the_server() {
    let server = FakeHub::start();
    let mut repo = tiny_repo();
    repo.gated_for = Some("hf_secret_token_123".into());
    server.add_repo("org/tiny", repo);
    let home = tempfile::tempdir().unwrap();
    let hf_home = home.path().join("hfhome");
    let vars: HashMap<&str, String> = HashMap::from([
        ("HF_HOME", hf_home.to_string_lossy().into_owned()),
        ("HF_ENDPOINT", format!("{}/", server.endpoint())),
        ("HF_TOKEN", "hf_secret_token_123".to_string()),
    ]);
    let mut settings = HubSettings::from_vars(|k| vars.get(k).cloned(), Some(home.path().into()));
    settings.proxy_from_env = false;
    let model = Hub::new(settings.clone())
        .download(&tiny(), None, &mut |_| {})
        .unwrap();
    assert!(model
        .dir
        .starts_with(hf_home.join("hub").join("models--org--tiny")));

    // The token went to the hub on every request, never to the storage host.
    let seen = server.seen();
    assert!(seen
        .iter()
        .filter(|s| !s.storage)
        .all(|s| s.authorization.as_deref() == Some("Bearer hf_secret_token_123")));
    let storage: Vec<_> = seen.iter().filter(|s| s.storage).collect();
    assert!(!storage.is_empty());
    assert!(
        storage.iter().all(|s| s.authorization.is_none()),
        "{storage:?}"
    );

    // Without the token the gated repository says what to do, and errors never hold a token.
    let mut anonymous = settings.clone();
    anonymous.token = None;
    anonymous.cache_dir = home.path().join("other");
    let err = Hub::new(anonymous)
        .download(&tiny(), None, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, HubError::Gated { .. }), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"));
    let mut wrong = settings.clone();
    wrong.token = Token::new("hf_wrong_secret");
    wrong.cache_dir = home.path().join("other");
    let err = Hub::new(wrong)
        .download(&tiny(), None, &mut |_| {})
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hf_wrong_secret"));
    let err = Hub::new(settings.clone())
        .download(&RepoId::parse("org/nope").unwrap(), None, &mut |_| {})
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hf_secret_token_123"));

    // HF_HUB_CACHE wins over HF_HOME, and the token file is read when HF_TOKEN is unset.
    std::fs::write(hf_home.join("token"), "hf_secret_token_123\n").unwrap();
    let hub_cache = home.path().join("elsewhere");
    let vars: HashMap<&str, String> = HashMap::from([
        ("HF_HOME", hf_home.to_string_lossy().into_owned()),
        ("HF_HUB_CACHE", hub_cache.to_string_lossy().into_owned()),
        ("HF_ENDPOINT", server.endpoint()),
    ]);
    let mut settings = HubSettings::from_vars(|k| vars.get(k).cloned(), Some(home.path().into()));
    settings.proxy_from_env = false;
    server.clear_seen();
    let model = Hub::new(settings)
        .download(&tiny(), None, &mut |_| {})
        .unwrap();
    assert!(model.dir.starts_with(hub_cache.join("models--org--tiny")));
    assert!(server
        .seen()
        .iter()
        .filter(|s| !s.storage)
        .all(|s| s.authorization.as_deref() == Some("Bearer hf_secret_token_123")));
}

#[test]
fn cli_downloads_lists_and_removes_with_env_settings() {
    let server = FakeHub::start();
    server.add_repo("org/tiny", tiny_repo());
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let arbiter = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("HF_ENDPOINT", server.endpoint())
            .env("HF_HUB_CACHE", &cache)
            .env("HF_TOKEN", "hf_cli_secret")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };

    let (code, stdout, stderr) = arbiter(&["models", "download", "org/tiny"]);
    assert_eq!(code, Some(0), "{stderr}");
    let snapshot = cache.join("models--org--tiny/snapshots").join(COMMIT);
    assert_eq!(stdout.trim(), snapshot.to_str().unwrap());
    assert!(
        stderr.contains("6 files")
            && stderr.contains("downloaded model-00001-of-00002.safetensors"),
        "{stderr}"
    );
    assert!(!stderr.contains("hf_cli_secret"));
    assert!(server
        .seen()
        .iter()
        .any(|s| s.authorization.as_deref() == Some("Bearer hf_cli_secret")));

    let (code, stdout, _) = arbiter(&["models", "list", "--json"]);
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["cached"][0]["repo"], "org/tiny");
    assert_eq!(listed["cached"][0]["size_on_disk"], 500_601);
    assert_eq!(
        listed["catalogue"][0]["repo"],
        "opencompass/CompassJudger-2-7B-Instruct"
    );
    let (_, text, _) = arbiter(&["models"]);
    assert!(
        text.contains("org/tiny") && text.contains("compassjudger-2-7b (default)"),
        "{text}"
    );
    assert!(text.contains("Token: from HF_TOKEN") && !text.contains("hf_cli_secret"));

    let (code, _, stderr) = arbiter(&["download", "org/missing"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("org/missing was not found"), "{stderr}");

    let (code, stdout, _) = arbiter(&["models", "rm", "org/tiny"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("500.6 kB freed"), "{stdout}");
    assert!(!cache.join("models--org--tiny").exists());
}

/// The tiny Qwen2 model the engine tests write, as a hub repository: weights as an LFS file.
fn tiny_model_repo(dir: &Path) -> FakeRepo {
    common::tiny_model::write(dir);
    let file = |name: &str, lfs: bool| FakeFile {
        name: name.into(),
        bytes: std::fs::read(dir.join(name)).unwrap(),
        lfs,
    };
    FakeRepo {
        commit: COMMIT.into(),
        gated_for: None,
        files: vec![
            file("config.json", false),
            file("tokenizer.json", false),
            file("tokenizer_config.json", false),
            file("generation_config.json", false),
            file("model.safetensors", true),
        ],
    }
}

#[test]
fn a_model_downloaded_from_the_hub_loads_and_generates_like_the_local_copy() {
    use arbiter::engine::catalogue::ModelSource;
    use arbiter::engine::{GenerateRequest, LoadOptions, Prompt, SamplingParams};
    let server = FakeHub::start();
    let local = tempfile::tempdir().unwrap();
    server.add_repo("org/tiny-qwen", tiny_model_repo(local.path()));
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub::new(server.settings(cache.path()));
    let source = ModelSource::Hub {
        repo: RepoId::parse("org/tiny-qwen").unwrap(),
        revision: None,
        entry: None,
    };
    let mut downloads = 0;
    let mut model = arbiter::engine::load(&source, &LoadOptions::default(), &hub, &mut |e| {
        if matches!(
            e,
            arbiter::engine::LoadEvent::Download(DownloadEvent::FileDone { .. })
        ) {
            downloads += 1;
        }
    })
    .unwrap();
    assert_eq!(downloads, 5, "every file the engine needs, and only those");
    assert_eq!(model.info.name, "org/tiny-qwen");
    assert_eq!(model.info.source, format!("org/tiny-qwen@{COMMIT}"));
    let request = GenerateRequest::new(
        Prompt::user("Which answer is better?"),
        SamplingParams {
            max_new_tokens: 24,
            ..SamplingParams::default()
        },
    );
    let never = AtomicBool::new(false);
    let from_hub = model.generate(&request, &never, &mut |_| {}).unwrap();
    let mut direct =
        arbiter::engine::loader::load_dir(local.path(), &LoadOptions::default(), &mut |_| {})
            .unwrap();
    let from_dir = direct.generate(&request, &never, &mut |_| {}).unwrap();
    assert_eq!(from_hub.tokens, from_dir.tokens);
    // A second load is served from the cache: no request reaches the hub offline.
    let mut offline = server.settings(cache.path());
    offline.offline = true;
    server.clear_seen();
    arbiter::engine::load(
        &source,
        &LoadOptions::default(),
        &Hub::new(offline),
        &mut |_| {},
    )
    .unwrap();
    assert!(server.seen().is_empty());
}

/// Runs Python's `huggingface_hub` against the fake hub, downloading `files` of org/tiny into
/// `cache` the way `transformers` would.
fn python_download(server: &FakeHub, cache: &Path, files: &[&str]) {
    // A file the repository lacks is asked too: Python then notes it in `.no_exist`.
    let script = format!(
        "import huggingface_hub as h\nfrom huggingface_hub.errors import EntryNotFoundError\n\
         for f in {files:?}:\n    try:\n        h.hf_hub_download('org/tiny', f)\n    \
         except EntryNotFoundError:\n        pass\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("HF_ENDPOINT", server.endpoint())
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .expect("python3 with huggingface_hub (pip install huggingface_hub)");
    assert!(
        out.status.success(),
        "huggingface_hub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn files_python_put_in_the_cache_are_used_without_a_request() {
    let server = FakeHub::start();
    let repo = tiny_repo();
    server.add_repo("org/tiny", repo.clone());
    let cache = tempfile::tempdir().unwrap();
    // Python fetches everything but the second shard.
    python_download(
        &server,
        cache.path(),
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors.index.json",
            "generation_config.json",
            SHARD1,
        ],
    );
    let python_requests = server.seen().len();
    assert!(python_requests > 0, "Python did not use the fake hub");

    // Offline, by branch (Python's refs/main) and by commit: nothing is asked, and the one
    // file Python did not fetch is named.
    let mut offline = server.settings(cache.path());
    offline.offline = true;
    server.clear_seen();
    for revision in [None, Some(COMMIT)] {
        let err = Hub::new(offline.clone())
            .download(&tiny(), revision, &mut |_| {})
            .unwrap_err();
        match &err {
            HubError::NotCached { missing, .. } => assert_eq!(missing, &vec![SHARD2.to_string()]),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());

    // Online: Python's files are kept; only the missing shard is transferred.
    let mut events = Vec::new();
    let model = Hub::new(server.settings(cache.path()))
        .download(&tiny(), None, &mut collect(&mut events))
        .unwrap();
    let transfers: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && (s.storage || s.path.contains("/resolve/")))
        .map(|s| s.path.clone())
        .collect();
    assert!(!transfers.is_empty());
    assert!(
        transfers
            .iter()
            .all(|p| p.ends_with(SHARD2) || p.contains(&sha_of(&repo, SHARD2))),
        "only the shard Python did not fetch: {transfers:?}"
    );
    let fetched: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::FileDone {
                file,
                from_cache: false,
                ..
            } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, vec![SHARD2]);
    let cached_in_plan = events.iter().find_map(|e| match e {
        DownloadEvent::Plan { files, .. } => Some(files.iter().filter(|f| f.cached).count()),
        _ => None,
    });
    assert_eq!(cached_in_plan, Some(5));
    for name in [SHARD1, SHARD2, "config.json"] {
        assert_eq!(
            std::fs::read(model.dir.join(name)).unwrap(),
            file_bytes(&repo, name)
        );
    }

    // Everything is here now: by commit, not a single request.
    server.clear_seen();
    let again = Hub::new(server.settings(cache.path()))
        .download(&tiny(), Some(COMMIT), &mut |_| {})
        .unwrap();
    assert_eq!(again.weights, model.weights);
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

#[test]
fn the_offline_variable_reaches_the_cli_and_names_what_is_missing() {
    let server = FakeHub::start();
    server.add_repo("org/tiny", tiny_repo());
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    let run = |offline: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_arbiter"));
        cmd.args(["models", "download", "org/tiny"])
            .env_clear()
            .env("HOME", home.path())
            .env("HF_ENDPOINT", server.endpoint())
            .env("HF_HUB_CACHE", &cache);
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(false);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::remove_file(
        cache
            .join("models--org--tiny/snapshots")
            .join(COMMIT)
            .join(SHARD1),
    )
    .unwrap();
    server.clear_seen();
    let (code, stderr) = run(true);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(SHARD1) && stderr.contains("HF_HUB_OFFLINE"),
        "{stderr}"
    );
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}
