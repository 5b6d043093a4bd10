//! The HTTP GET of `httpGet` lifecycle hooks: one plain HTTP/1.1 request
//! whose status must be 2xx/3xx, as upstream's hook runner treats it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `http://host:port/path` within `timeout`; Err with the reason.
pub async fn http_get(host: &str, port: i32, path: &str, timeout: Duration) -> Result<(), String> {
    let port = u16::try_from(port).map_err(|_| format!("invalid port {port}"))?;
    let url = format!("http://{host}:{port}{path}");
    let attempt = async {
        let mut stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let mut head = vec![0u8; 64];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!(
                "HTTP lifecycle hook ({path}) for Container in Pod failed with status code {code}"
            ))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("Get {url:?}: context deadline exceeded"))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn status_decides_and_errors_are_clear() {
        let ok = server("204 No Content").await;
        assert_eq!(
            http_get("127.0.0.1", i32::from(ok), "/", Duration::from_secs(2)).await,
            Ok(())
        );
        let bad = server("500 Internal Server Error").await;
        let err = http_get("127.0.0.1", i32::from(bad), "/hook", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains("failed with status code 500"), "{err}");
        // A closed port: connection refused.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = http_get("127.0.0.1", i32::from(closed), "/", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.starts_with("Get \"http://127.0.0.1:"), "{err}");
    }
}
