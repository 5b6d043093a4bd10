//! A raw HTTP/1.1 client over TLS, so tests control exactly what is sent
//! and when (a body announced but held back keeps a request in flight).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use skiff_apiserver::ApiServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A raw HTTP/1.1 connection over TLS, so tests control exactly what is
/// sent and when.
pub struct Conn {
    pub io: BufReader<TlsStream<TcpStream>>,
}

/// A response head and (when read) its body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Conn {
    pub async fn open(server: &ApiServer) -> Conn {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server.pki().server_ca_der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
        let tls = connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        Conn {
            io: BufReader::new(tls),
        }
    }

    /// Sends a request head announcing `content_length` body bytes (if
    /// any), followed by `body` (which may be shorter, to hold the request).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_length: Option<usize>,
        body: &[u8],
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(len) = content_length {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {len}\r\n"
            ));
        }
        head.push_str("\r\n");
        let io = self.io.get_mut();
        io.write_all(head.as_bytes()).await.unwrap();
        io.write_all(body).await.unwrap();
        io.flush().await.unwrap();
    }

    /// Sends more body bytes.
    pub async fn send_more(&mut self, body: &[u8]) {
        let io = self.io.get_mut();
        io.write_all(body).await.unwrap();
        io.flush().await.unwrap();
    }

    pub async fn read_head(&mut self) -> Resp {
        let mut line = String::new();
        self.io.read_line(&mut line).await.unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("bad status line {line:?}"))
            .parse()
            .unwrap();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// One chunk of a chunked body: `Some(data)`, `Some(empty)` for the
    /// terminal chunk, `None` if the connection ended first.
    pub async fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(line.trim(), 16).ok()?;
        let mut data = vec![0; size + 2];
        self.io.read_exact(&mut data).await.ok()?;
        data.truncate(size);
        Some(data)
    }

    /// A whole response (Content-Length or chunked body).
    pub async fn read_response(&mut self) -> Resp {
        let mut resp = self.read_head().await;
        if let Some(len) = resp.headers.get("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.io.read_exact(&mut body).await.unwrap();
            resp.body = body;
        } else if resp.headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
            while let Some(chunk) = self.read_chunk().await {
                if chunk.is_empty() {
                    break;
                }
                resp.body.extend(chunk);
            }
        }
        resp
    }

    /// Reads a chunked body until its terminal chunk: true when the stream
    /// ended cleanly, false when the connection dropped first.
    pub async fn read_to_clean_end(&mut self) -> bool {
        loop {
            match self.read_chunk().await {
                Some(chunk) if chunk.is_empty() => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

/// One whole request on a fresh connection.
pub async fn request(
    server: &ApiServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Resp {
    let mut conn = Conn::open(server).await;
    let len = (!body.is_empty() || method == "POST").then_some(body.len());
    conn.send(method, path, token, len, body.as_bytes()).await;
    conn.read_response().await
}
