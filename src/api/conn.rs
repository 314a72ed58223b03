//! Connections as the server accepts them, with one change: the bare `400 Bad Request` that hyper
//! writes for a request it cannot parse (most often a raw `>`, `<` or `"` in the URL, as in
//! `?event_type=order.>` typed into curl) becomes an answer in the API's JSON error shape that says
//! how to write the URL. Such a request never reaches the router, so this is the only place to do it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What hyper writes when parsing a request fails (it closes the connection after it).
const PARSE_ERROR_HEAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n";

const PARSE_ERROR_BODY: &str = r#"{"error":{"code":"malformed_request","message":"the request line or headers could not be parsed. A URL must percent-encode `>` as %3E, `<` as %3C and `\"` as %22: write ?event_type=order.%3E for the pattern order.> (curl --data-urlencode with -G does it for you)"}}"#;

/// A TCP listener whose connections answer unparseable requests in the JSON error shape.
pub struct JsonErrorListener(pub TcpListener);

impl Listener for JsonErrorListener {
    type Io = JsonParseErrors<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (JsonParseErrors { inner: io, replacement: None }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that passes everything through, except hyper's parse-error answer.
pub struct JsonParseErrors<T> {
    inner: T,
    /// The JSON answer being written in place of hyper's, and how much of it is out. Once set, what
    /// hyper writes is dropped: it has nothing more to say before it closes.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Writes what is left of the replacement; ready once it is all out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((bytes, written)) = &mut self.replacement else { return Poll::Ready(Ok(())) };
        while *written < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn replacement() -> Vec<u8> {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id).to_owned();
    format!(
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{PARSE_ERROR_BODY}",
        PARSE_ERROR_BODY.len()
    )
    .into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() && buf.starts_with(PARSE_ERROR_HEAD) {
            this.replacement = Some((replacement(), 0));
        }
        if this.replacement.is_some() {
            return this.poll_replacement(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        if this.replacement.is_none() && first.starts_with(PARSE_ERROR_HEAD) {
            this.replacement = Some((replacement(), 0));
        }
        if this.replacement.is_some() {
            let total = bufs.iter().map(|b| b.len()).sum();
            return this.poll_replacement(cx).map_ok(|()| total);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn only_the_parse_error_answer_is_replaced() {
        let mut out = JsonParseErrors { inner: Vec::new(), replacement: None };
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
        assert_eq!(out.inner, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");

        let mut out = JsonParseErrors { inner: Vec::new(), replacement: None };
        out.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n")
            .await
            .unwrap();
        out.shutdown().await.unwrap();
        let text = String::from_utf8(out.inner).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json") && head.contains("x-request-id: "), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "malformed_request");
        assert!(body["error"]["message"].as_str().unwrap().contains("%3E"));
    }
}
