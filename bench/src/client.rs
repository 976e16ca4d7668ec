//! A minimal keep-alive HTTP/1.1 client (hyper's connection API, TCP_NODELAY): what the
//! benchmark drives the apps with. One `Conn` is one TCP connection, used one request at a time.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;

pub struct Conn {
    addr: SocketAddr,
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { addr, send })
    }

    /// Sends `req` with `body` and this connection's `Host`: the status, `Location` and body.
    async fn request(
        &mut self,
        req: hyper::http::request::Builder,
        body: Bytes,
    ) -> Result<(u16, Option<String>, Bytes)> {
        let req = req
            .header(hyper::header::HOST, self.addr.to_string())
            .body(Full::new(body))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, location, body))
    }

    /// `POST /order`; returns the new order's id. Anything but 202 is an error.
    pub async fn place(&mut self, details: &str) -> Result<String> {
        let body = serde_json::to_vec(&serde_json::json!({ "details": details }))?;
        let req = Request::post("/order").header(hyper::header::CONTENT_TYPE, "application/json");
        let (status, location, body) = self.request(req, body.into()).await?;
        if status != 202 {
            bail!(
                "POST /order answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let location = location.context("202 without a Location header")?;
        Ok(location.trim_start_matches("/order/").to_string())
    }

    /// `GET path`; the status code (the body is read and dropped).
    pub async fn get(&mut self, path: &str) -> Result<u16> {
        let (status, _, _) = self.request(Request::get(path), Bytes::new()).await?;
        Ok(status)
    }

    /// `GET /order/{id}`; true when it reports `fulfilled`.
    pub async fn is_fulfilled(&mut self, id: &str) -> Result<bool> {
        let req = Request::get(format!("/order/{id}"));
        let (status, _, body) = self.request(req, Bytes::new()).await?;
        if status != 200 {
            bail!(
                "GET /order/{id} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let body = std::str::from_utf8(&body).unwrap_or("");
        Ok(body.contains(r#""status":"fulfilled""#))
    }
}
