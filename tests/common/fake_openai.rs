//! A fake OpenAI-compatible server on 127.0.0.1 that streams chat completions the way vLLM and
//! llama.cpp's server do and injects faults on demand (429 with Retry-After, 500, a stream cut
//! mid-JSON, a slow or stalled stream, malformed SSE, a refused key, a rejected prompt), and
//! the datasets whose prompts it reads. Used by the CLI's and the app's batch-run tests.

// Each test binary uses a part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const GOOD_KEY: &str = "sk-test-GOODKEY-0123456789";
pub const BAD_KEY: &str = "sk-test-BADKEY-9876543210";

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with this `Retry-After` value.
    RateLimited(&'static str),
    ServerError,
    /// Two pieces of the answer, then half a JSON chunk, then the connection closes.
    CutMidJson,
    /// The whole answer, each piece after a pause shorter than the client's timeout.
    Slow,
    /// A pause longer than the client's timeout in the middle of the answer.
    Stall,
    /// A `data:` line that is not JSON.
    MalformedSse,
}

impl Fault {
    /// Whether the request it hits fails (and so is retried by the client).
    pub fn fails(&self) -> bool {
        *self != Fault::Slow
    }
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub model: String,
    pub item: String,
    pub swapped: bool,
    pub at: Instant,
    pub fault: Option<Fault>,
    pub status: u16,
    /// The request body as sent.
    pub body: Value,
}

#[derive(Default)]
pub struct State {
    /// Faults to inject, per model, one per request in arrival order.
    pub faults: HashMap<String, VecDeque<Fault>>,
    /// (model, item) pairs answered 400 every time.
    pub rejected: Vec<(String, String)>,
    pub seen: Vec<Seen>,
    pub in_flight: HashMap<String, usize>,
    pub max_in_flight: HashMap<String, usize>,
    /// Pause before every answer (to catch a run in the middle).
    pub pace: Duration,
    /// Answer this status (400 or 422, as servers without structured outputs do) to every
    /// request that carries an answer shape (`response_format` or a grammar field).
    pub refuse_constrained: Option<u16>,
}

pub struct FakeServer {
    pub state: Arc<Mutex<State>>,
    pub addr: std::net::SocketAddr,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        FakeServer { state, addr }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn inject(&self, model: &str, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .faults
            .entry(model.to_string())
            .or_default()
            .extend(faults.iter().cloned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// The item id and order of a prompt: items' answers are "Alpha answer for q-NN" and
/// "Beta answer for q-NN", and whichever comes first was shown as Model A.
pub fn item_of(prompt: &str) -> (String, bool) {
    let alpha = prompt
        .find("Alpha answer for ")
        .expect("the prompt shows answer A");
    let beta = prompt
        .find("Beta answer for ")
        .expect("the prompt shows answer B");
    let start = alpha + "Alpha answer for ".len();
    (prompt[start..start + 4].to_string(), beta < alpha)
}

/// What each fake judge thinks: `judge-a` prefers Alpha, `judge-b` prefers Alpha on even items
/// and Beta on odd ones (so odd items have no majority), both whatever the order shown.
pub fn verdict(model: &str, item: &str, swapped: bool) -> &'static str {
    let n: usize = item[2..].parse().expect("q-NN");
    let prefers_alpha = model != "judge-b" || n.is_multiple_of(2);
    if prefers_alpha != swapped {
        "Model A"
    } else {
        "Model B"
    }
}

pub fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone the socket"));
    let mut content_length = 0;
    let mut auth = None;
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            auth = Some(line["authorization:".len()..].trim().to_string());
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request: Value = serde_json::from_slice(&body).expect("the client sends JSON");
    assert_eq!(request["stream"], true, "the client streams");
    assert_eq!(request["stream_options"]["include_usage"], true);
    let model = request["model"].as_str().unwrap_or("").to_string();
    let prompt = request["messages"][0]["content"].as_str().unwrap_or("");
    let (item, swapped) = item_of(prompt);
    let mut conn = conn;

    let (fault, rejected, pace) = {
        let mut s = state.lock().unwrap();
        let fault = if auth.as_deref() == Some(&format!("Bearer {GOOD_KEY}")) {
            s.faults.get_mut(&model).and_then(|q| q.pop_front())
        } else {
            None
        };
        let rejected = s.rejected.contains(&(model.clone(), item.clone()));
        let n = s.in_flight.entry(model.clone()).or_default();
        *n += 1;
        let n = *n;
        let max = s.max_in_flight.entry(model.clone()).or_default();
        *max = (*max).max(n);
        (fault, rejected, s.pace)
    };
    let shaped = ["response_format", "grammar", "ebnf", "structured_outputs"]
        .iter()
        .any(|field| request.get(field).is_some());
    let refused_shape = state.lock().unwrap().refuse_constrained.filter(|_| shaped);
    let authorised = auth.as_deref() == Some(&format!("Bearer {GOOD_KEY}"));
    let status = match (&fault, authorised, rejected) {
        (_, false, _) => 401,
        (_, true, true) => 400,
        _ if refused_shape.is_some() => refused_shape.unwrap_or(400),
        (Some(Fault::RateLimited(_)), ..) => 429,
        (Some(Fault::ServerError), ..) => 500,
        _ => 200,
    };
    // Recorded on arrival: a stalled answer may still be sleeping when the run ends.
    state.lock().unwrap().seen.push(Seen {
        model: model.clone(),
        item: item.clone(),
        swapped,
        at: Instant::now(),
        fault: fault.clone(),
        status,
        body: request.clone(),
    });
    // The request stops counting as in flight just before its last bytes are written: once the
    // client has read them it may send its next request, which must not find this one counted.
    let mut counted = true;
    let mut done = || {
        if std::mem::take(&mut counted) {
            let mut s = state.lock().unwrap();
            if let Some(n) = s.in_flight.get_mut(&model) {
                *n -= 1;
            }
        }
    };
    if status != 200 {
        done();
    }
    match status {
        401 => {
            // Like OpenAI, echo the key that was refused.
            let key = auth.unwrap_or_default();
            let message = format!(
                "Incorrect API key provided: {}",
                key.trim_start_matches("Bearer ")
            );
            respond_json(&mut conn, 401, "", &message);
        }
        400 => respond_json(
            &mut conn,
            400,
            "",
            "This model's maximum context length is 8 tokens",
        ),
        429 => {
            let Some(Fault::RateLimited(after)) = &fault else {
                unreachable!()
            };
            respond_json(
                &mut conn,
                429,
                &format!("Retry-After: {after}\r\n"),
                "slow down",
            );
        }
        500 => respond_json(&mut conn, 500, "", "internal error"),
        422 => respond_json(
            &mut conn,
            422,
            "",
            "Unknown field `response_format`: structured outputs are not supported",
        ),
        _ => {
            std::thread::sleep(pace);
            stream_answer(
                &mut conn,
                &model,
                verdict(&model, &item, swapped),
                fault.as_ref(),
                &mut done,
            );
        }
    }
    done();
}

pub fn respond_json(conn: &mut TcpStream, status: u16, extra: &str, message: &str) {
    let body = serde_json::json!({"error": {"message": message, "type": "error"}}).to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

pub fn chunk(model: &str, content: Option<&str>, finish: Option<&str>) -> String {
    let delta = match content {
        Some(c) => serde_json::json!({"content": c}),
        None => serde_json::json!({}),
    };
    let v = serde_json::json!({"id": "c1", "object": "chat.completion.chunk", "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    format!("data: {v}\n\n")
}

/// `done` is called once, just before the bytes that end the answer (or break it) are written.
pub fn stream_answer(
    conn: &mut TcpStream,
    model: &str,
    choice: &str,
    fault: Option<&Fault>,
    done: &mut dyn FnMut(),
) {
    let _ = conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    );
    let answer = format!("{{\"Choice\": \"{choice}\"}}");
    let pieces = [&answer[..4], &answer[4..12], &answer[12..]];
    for (i, piece) in pieces.iter().enumerate() {
        match fault {
            Some(Fault::CutMidJson) if i == 2 => {
                done();
                let _ = conn.write_all(
                    b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Mod",
                );
                let _ = conn.flush();
                return;
            }
            Some(Fault::MalformedSse) if i == 1 => {
                done();
                let _ = conn.write_all(b"data: {this is not json}\n\n");
                return;
            }
            Some(Fault::Stall) if i == 1 => std::thread::sleep(Duration::from_millis(2500)),
            Some(Fault::Slow) => std::thread::sleep(Duration::from_millis(200)),
            _ => {}
        }
        if conn
            .write_all(chunk(model, Some(piece), None).as_bytes())
            .is_err()
        {
            done();
            return;
        }
        let _ = conn.flush();
    }
    let usage = serde_json::json!({"id": "c1", "model": model, "choices": [],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}});
    done();
    let _ = conn.write_all(chunk(model, None, Some("stop")).as_bytes());
    let _ = conn.write_all(format!("data: {usage}\n\ndata: [DONE]\n\n").as_bytes());
}

/// `items.jsonl` with `items` items, q-00, q-01, ..., whose answers name their item (which is
/// how the server tells which item and order a prompt is for).
pub fn write_dataset(dir: &Path, items: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..items {
        let id = format!("q-{i:02}");
        text.push_str(
            &serde_json::json!({"id": id, "question": format!("Which answer to question {id} is better?"),
                "model_a": "alpha", "response_a": format!("Alpha answer for {id}."),
                "model_b": "beta", "response_b": format!("Beta answer for {id}.")})
            .to_string(),
        );
        text.push('\n');
    }
    let path = dir.join("items.jsonl");
    std::fs::write(&path, text).expect("write the dataset");
    path
}
