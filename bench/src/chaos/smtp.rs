//! The SMTP server the replicas send email to during a chaos run: enough of RFC 5321 for
//! lettre (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), on a fixed loopback
//! port, recording the `Message-ID` of every message it accepts. It can be taken down
//! (listener closed, every session cut) and brought back on the same port.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The server; `received` counts messages by `Message-ID`.
#[derive(Debug)]
pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    received: Arc<Mutex<HashMap<String, u32>>>,
    serving: Option<CancellationToken>,
}

impl SmtpSink {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let mut sink = Self { port: super::cluster::free_port()?, received: Arc::default(), serving: None };
        sink.up().await?;
        Ok(sink)
    }

    /// Listens again on its port.
    pub(crate) async fn up(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.context("binding the SMTP port")?;
        let serving = CancellationToken::new();
        let (received, stop) = (self.received.clone(), serving.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let (received, stop) = (received.clone(), stop.clone());
                            tokio::spawn(async move {
                                tokio::select! {
                                    () = stop.cancelled() => {}
                                    _ = session(stream, received) => {}
                                }
                            });
                        }
                    }
                }
            }
        });
        self.serving = Some(serving);
        Ok(())
    }

    /// Stops listening and cuts every open session.
    pub(crate) fn down(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.cancel();
        }
    }

    /// Message-ID → how many times a message with it was accepted.
    pub(crate) fn received(&self) -> HashMap<String, u32> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn session(stream: TcpStream, received: Arc<Mutex<HashMap<String, u32>>>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 chaos.localhost ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-chaos.localhost\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO")
            || command.starts_with("MAIL")
            || command.starts_with("RCPT")
            || command.starts_with("RSET")
            || command.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if command == "DATA" {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let message_id = read_message(&mut lines).await?;
            if let Some(id) = message_id {
                *received.lock().unwrap_or_else(PoisonError::into_inner).entry(id).or_default() += 1;
            }
            b"250 OK: queued\r\n"
        } else if command == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            b"502 Command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// Reads a message up to the lone dot; returns its `Message-ID` (without the angle brackets).
async fn read_message<R: AsyncBufReadExt + Unpin>(lines: &mut R) -> anyhow::Result<Option<String>> {
    let mut message_id = None;
    let mut in_headers = true;
    let mut line = String::new();
    loop {
        line.clear();
        anyhow::ensure!(lines.read_line(&mut line).await? > 0, "the client left in the middle of DATA");
        let text = line.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Ok(message_id);
        }
        if text.is_empty() {
            in_headers = false;
        }
        if in_headers
            && let Some((name, value)) = text.split_once(':')
            && name.eq_ignore_ascii_case("message-id")
        {
            message_id = Some(value.trim().trim_start_matches('<').trim_end_matches('>').to_owned());
        }
    }
}
