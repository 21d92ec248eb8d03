//! The listener the server accepts connections with. It exists for one reason: hyper answers
//! some requests before any router or middleware sees them (an overlong URI: 414, too many or
//! too large headers: 431, a request line, header or `Content-Length` it cannot parse: 400),
//! and those answers have empty bodies. No layer can reach them, so each connection's writes
//! are watched instead: such an answer is the last thing hyper writes on a connection before
//! closing it, it is a 400, 414 or 431 with `content-length: 0`, and nothing of ours ever
//! sends that (every 4xx of ours carries the envelope). It is rewritten into the envelope,
//! with a request id, like every other failure (ADR 0004).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::{Listener, ListenerExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::error::{ErrorBody, ErrorEnvelope};

/// `listener`, with hyper's bodiless parse-error answers put into the envelope. Usable with
/// `axum::serve` and `ConnectInfo<SocketAddr>` (through `tap_io`, whose connect info axum
/// provides for any listener).
pub fn envelope_parse_errors(
    listener: TcpListener,
) -> axum::serve::TapIo<EnvelopingListener, fn(&mut EnvelopedStream)> {
    EnvelopingListener(listener).tap_io(|_stream| {})
}

/// A TCP listener whose connections are [`EnvelopedStream`]s.
#[derive(Debug)]
pub struct EnvelopingListener(TcpListener);

impl Listener for EnvelopingListener {
    type Io = EnvelopedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = Listener::accept(&mut self.0).await;
        // Answers go out as soon as they are written: with Nagle's algorithm a response
        // written in two parts waits for the client's delayed ACK (about 40 ms on Linux).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        (EnvelopedStream { inner: stream, pending: Vec::new(), claimed: 0 }, address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose writes are watched for hyper's parse-error answers.
#[derive(Debug)]
pub struct EnvelopedStream {
    inner: TcpStream,
    /// A rewritten answer still to be written out.
    pending: Vec<u8>,
    /// How many bytes of the caller's buffer the pending answer stands for (reported as
    /// written once it is out).
    claimed: usize,
}

impl EnvelopedStream {
    /// Writes out the pending rewritten answer, if any.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EnvelopedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for EnvelopedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            ready!(this.poll_drain(cx))?;
            return Poll::Ready(Ok(std::mem::take(&mut this.claimed)));
        }
        if let Some(rewritten) = envelope_bodiless_error(buf) {
            this.pending = rewritten;
            this.claimed = buf.len();
            ready!(this.poll_drain(cx))?;
            return Poll::Ready(Ok(std::mem::take(&mut this.claimed)));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored, so hyper hands each response head over as one buffer to look at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The statuses hyper answers on its own, and what the envelope says for each.
fn described(status: u16) -> Option<(&'static str, &'static str)> {
    match status {
        400 => Some((
            "bad_request",
            "The request could not be parsed: a malformed request line or header, or an invalid Content-Length.",
        )),
        414 => Some(("uri_too_long", "The request URI is too long.")),
        431 => Some(("request_header_fields_too_large", "The request has too many headers, or headers too large.")),
        _ => None,
    }
}

/// If `buf` ends with a bodiless 400, 414 or 431 response head (hyper's answer to a request
/// it could not parse), `buf` with that head rewritten to carry the envelope.
fn envelope_bodiless_error(buf: &[u8]) -> Option<Vec<u8>> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let start = last_status_line(buf)?;
    let head = std::str::from_utf8(&buf[start..]).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let (code, message) = described(status)?;
    let mut lines: Vec<&str> = head.trim_end_matches("\r\n").split("\r\n").collect();
    let empty_body = lines.iter().skip(1).any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !empty_body || lines.iter().any(|line| line.to_ascii_lowercase().starts_with("content-type:")) {
        return None;
    }
    let request_id = uuid::Uuid::now_v7().to_string();
    tracing::info!(status, code, %request_id, "refused a request the HTTP server could not parse");
    let envelope = ErrorEnvelope {
        error: ErrorBody {
            code: code.to_owned(),
            message: message.to_owned(),
            details: None,
            request_id: Some(request_id.clone()),
        },
    };
    let body = serde_json::to_vec(&envelope).ok()?;
    let length = format!("content-length: {}", body.len());
    let request_id = format!("x-request-id: {request_id}");
    lines.retain(|line| !line.eq_ignore_ascii_case("content-length: 0"));
    lines.extend([
        "content-type: application/json",
        length.as_str(),
        request_id.as_str(),
        "x-content-type-options: nosniff",
    ]);
    let mut rewritten = buf[..start].to_vec();
    rewritten.extend_from_slice(lines.join("\r\n").as_bytes());
    rewritten.extend_from_slice(b"\r\n\r\n");
    rewritten.extend_from_slice(&body);
    Some(rewritten)
}

/// Where the last response head of `buf` starts: its status line, at the start of the buffer
/// or after an earlier answer written in the same buffer (pipelined requests).
fn last_status_line(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).rev().find(|&at| buf[at..].starts_with(b"HTTP/1.1 ") || buf[at..].starts_with(b"HTTP/1.0 "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn body_of(rewritten: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(rewritten).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hypers_bodiless_parse_errors_get_the_envelope() {
        for (status, code) in [(431, "request_header_fields_too_large"), (414, "uri_too_long"), (400, "bad_request")] {
            let head = format!(
                "HTTP/1.1 {status} Whatever\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sat, 21 Nov 2026 09:30:00 GMT\r\n\r\n"
            );
            let rewritten = envelope_bodiless_error(head.as_bytes()).unwrap();
            let text = String::from_utf8(rewritten.clone()).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} Whatever\r\n")));
            assert!(text.contains("content-type: application/json\r\n"));
            assert!(!text.contains("content-length: 0\r\n"));
            let body = body_of(&rewritten);
            assert_eq!(body["error"]["code"], code);
            let length = text.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), serde_json::to_vec(&body).unwrap().len());
        }
    }

    #[test]
    fn our_own_answers_pass_untouched() {
        for head in [
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 87\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{\"partial\":",
        ] {
            assert!(envelope_bodiless_error(head.as_bytes()).is_none(), "{head:?}");
        }
    }

    #[test]
    fn an_error_after_a_pipelined_answer_is_rewritten_in_place() {
        let buf =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let rewritten = envelope_bodiless_error(buf).unwrap();
        let text = String::from_utf8(rewritten).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("\"code\":\"bad_request\""));
    }
}
