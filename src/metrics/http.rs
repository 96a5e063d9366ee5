//! The HTTP/1.1 endpoint: `GET /metrics` (hyper 1, one task per connection).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::Metrics;

/// A listening endpoint; [`Endpoint::stop`] ends it.
pub(super) struct Endpoint {
    /// The address it listens on (the port chosen, if 0 was asked).
    pub addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    pub fn start(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) -> std::io::Result<Endpoint> {
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "metrics endpoint: accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = stopped.changed() => return,
                };
                let metrics = metrics.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, metrics.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
                    }
                });
            }
        });
        Ok(Endpoint { addr, stop, task })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: GET /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n"));
    }
    // The refresh reads sled and the filesystem: off the async workers.
    let Ok(body) = tokio::task::spawn_blocking(move || metrics.render()).await else {
        return Ok(plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be collected\n",
        ));
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    Ok(r)
}
