//! A small but real SMTP server on loopback for the tests: it speaks enough of RFC 5321
//! (greeting, EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) for lettre,
//! keeps what it accepted, and can be told to answer `DATA` with a given reply.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.data).expect("a parseable message")
    }
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    /// Replies to give to the end of `DATA`, first to last; then 250.
    data_replies: Vec<(u16, String)>,
    /// `DATA` commands answered so far.
    data_attempts: usize,
    /// Replies to give to `AUTH`, first to last; then 235.
    auth_replies: Vec<(u16, String)>,
    /// `EHLO` does not offer `AUTH`.
    no_auth: bool,
}

/// The server; stops when dropped.
#[derive(Debug, Clone)]
pub struct TestSmtp {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        if Arc::strong_count(&self.state) == 1 {
            self.stop.cancel();
        }
    }
}

/// A loopback port where nothing listens (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl TestSmtp {
    pub async fn start() -> Self {
        Self::on(0).await
    }

    /// Listens on `port` (0 for any).
    pub async fn on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (accepting, stopping) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(session(stream, accepting.clone()));
                    }
                }
            }
        });
        Self { port, state, stop }
    }

    /// The next `DATA` commands are answered with these replies, in order.
    pub fn reply_to_data(&self, replies: &[(u16, &str)]) {
        self.state.lock().unwrap().data_replies = replies.iter().map(|(c, m)| (*c, (*m).to_owned())).collect();
    }

    /// Whether `EHLO` offers `AUTH PLAIN LOGIN` (it does unless told otherwise).
    pub fn advertise_auth(&self, offered: bool) {
        self.state.lock().unwrap().no_auth = !offered;
    }

    /// The next `AUTH` commands get these replies, then success.
    pub fn reply_to_auth(&self, replies: &[(u16, &str)]) {
        self.state.lock().unwrap().auth_replies = replies.iter().map(|(c, m)| (*c, (*m).to_owned())).collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn data_attempts(&self) -> usize {
        self.state.lock().unwrap().data_attempts
    }
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    if !reply(&mut write, "220 test-smtp ESMTP ready").await {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let ok = if upper.starts_with("EHLO") {
            let no_auth = state.lock().unwrap().no_auth;
            let auth = if no_auth { "" } else { "250-AUTH PLAIN LOGIN\r\n" };
            reply(&mut write, &format!("250-test-smtp\r\n250-8BITMIME\r\n{auth}250 SMTPUTF8")).await
        } else if upper.starts_with("AUTH") {
            let answer = {
                let mut state = state.lock().unwrap();
                if state.auth_replies.is_empty() {
                    "235 2.7.0 Authentication successful".to_owned()
                } else {
                    let (code, message) = state.auth_replies.remove(0);
                    format!("{code} {message}")
                }
            };
            reply(&mut write, &answer).await
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            reply(&mut write, "250 OK").await
        } else if upper.starts_with("MAIL FROM:") {
            from = command[10..].trim().to_owned();
            to.clear();
            reply(&mut write, "250 OK").await
        } else if upper.starts_with("RCPT TO:") {
            to.push(command[8..].trim().to_owned());
            reply(&mut write, "250 OK").await
        } else if upper.starts_with("RSET") {
            (from, to) = (String::new(), Vec::new());
            reply(&mut write, "250 OK").await
        } else if upper == "DATA" {
            if !reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await {
                return;
            }
            let mut data = Vec::new();
            loop {
                let mut line = String::new();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                data.extend_from_slice(unstuffed.as_bytes());
            }
            let answer = {
                let mut state = state.lock().unwrap();
                state.data_attempts += 1;
                if state.data_replies.is_empty() {
                    state.received.push(Received { from: from.clone(), to: to.clone(), data });
                    "250 OK queued".to_owned()
                } else {
                    let (code, message) = state.data_replies.remove(0);
                    format!("{code} {message}")
                }
            };
            reply(&mut write, &answer).await
        } else if upper.starts_with("QUIT") {
            reply(&mut write, "221 Bye").await;
            return;
        } else {
            reply(&mut write, "502 Command not implemented").await
        };
        if !ok {
            return;
        }
    }
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(format!("{text}\r\n").as_bytes()).await.is_ok()
}
