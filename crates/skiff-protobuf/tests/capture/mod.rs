//! A minimal plain-HTTP API server on 127.0.0.1 that kubectl can talk to: it
//! answers legacy discovery from the real resource table, records every POST
//! body, stores what was posted so later GETs (`kubectl expose`) find it, and
//! answers with the object decoded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// One recorded POST.
#[derive(Debug, Clone)]
pub struct Post {
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    posts: Vec<Post>,
    objects: HashMap<String, Value>,
}

/// The running server; its threads end with the test process.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                thread::spawn(move || {
                    if let Err(e) = serve(conn, addr, &state) {
                        eprintln!("capture server: {e:#}");
                    }
                });
            }
        });
        Ok(Server { addr, state })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many POSTs so far.
    pub fn post_count(&self) -> usize {
        lock(&self.state).posts.len()
    }

    /// The POSTs after the first `from`.
    pub fn posts_since(&self, from: usize) -> Vec<Post> {
        lock(&self.state).posts[from..].to_vec()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(conn: TcpStream, addr: SocketAddr, state: &Mutex<State>) -> Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            bail!("bad request line {request_line:?}");
        };
        let (method, target) = (method.to_owned(), target.to_owned());
        let mut content_length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => content_length = value.trim().parse()?,
                    "content-type" => content_type = value.trim().to_owned(),
                    "transfer-encoding" => bail!("chunked bodies are not expected from kubectl"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let (status, reply) = match method.as_str() {
            "GET" => get(&path, addr, state),
            "POST" => post(path, content_type, body, state),
            _ => (405, not_found(&path)),
        };
        let reply = serde_json::to_vec(&reply)?;
        write!(
            writer,
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if status < 300 { "OK" } else { "Error" },
            reply.len()
        )?;
        writer.write_all(&reply)?;
        writer.flush()?;
    }
}

fn not_found(path: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{path} not found"), "reason": "NotFound", "code": 404})
}

fn get(path: &str, addr: SocketAddr, state: &Mutex<State>) -> (u16, Value) {
    if let Some(doc) = skiff_api::discovery::document(path, &addr.to_string()) {
        return (200, doc);
    }
    match lock(state).objects.get(path) {
        Some(obj) => (200, obj.clone()),
        None => (404, not_found(path)),
    }
}

fn post(path: String, content_type: String, body: Vec<u8>, state: &Mutex<State>) -> (u16, Value) {
    let decoded = if skiff_protobuf::is_media_type(&content_type) {
        skiff_protobuf::decode(&body).context("protobuf body")
    } else {
        serde_json::from_slice::<Value>(&body).context("JSON body")
    };
    let mut state = lock(state);
    state.posts.push(Post {
        path: path.clone(),
        content_type,
        body,
    });
    let mut obj = match decoded {
        Ok(obj) => obj,
        Err(e) => {
            let msg = format!("{e:#}");
            return (
                400,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": msg, "reason": "BadRequest",
                                "code": 400}),
            );
        }
    };
    if path.ends_with("/token") {
        obj["status"] = json!({"token": "captured", "expirationTimestamp": "2030-01-01T00:00:00Z"});
        return (201, obj);
    }
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    obj["metadata"]["namespace"] = json!("default");
    state.objects.insert(format!("{path}/{name}"), obj.clone());
    (201, obj)
}
