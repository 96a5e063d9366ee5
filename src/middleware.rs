//! The tower layer and service of every middleware in front of the gRPC
//! services (RPC metrics, wire errors, authentication), written once: a
//! middleware is a [`Middleware`], which says what it does with one call,
//! and [`Layer`] installs it around the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The response of every gRPC service.
pub type GrpcResponse = http::Response<tonic::body::Body>;

/// The future a middleware answers a call with.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A service a middleware can stand in front of (taking requests with a
/// body `B`).
pub trait Inner<B>:
    tower::Service<http::Request<B>, Response = GrpcResponse, Future: Send + 'static> + Clone + Send + 'static
{
}

impl<S, B> Inner<B> for S where
    S: tower::Service<http::Request<B>, Response = GrpcResponse, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// What a middleware does with one call.
pub trait Middleware: Clone {
    /// Answers `request`, given the inner service, which is ready (its
    /// `poll_ready` said so).
    fn call<S: Inner<B>, B: Send + 'static>(
        &self,
        inner: &mut S,
        request: http::Request<B>,
    ) -> BoxFuture<Result<GrpcResponse, S::Error>>;
}

/// Installs the middleware `M` in front of the services.
#[derive(Clone, Default)]
pub struct Layer<M> {
    middleware: M,
}

impl<M> Layer<M> {
    /// A layer that puts `middleware` in front of every service it wraps
    /// (each wrapped service gets a clone).
    pub fn new(middleware: M) -> Layer<M> {
        Layer { middleware }
    }
}

impl<S, M: Clone> tower::Layer<S> for Layer<M> {
    type Service = Service<S, M>;
    fn layer(&self, inner: S) -> Service<S, M> {
        Service {
            inner,
            middleware: self.middleware.clone(),
        }
    }
}

/// The service `S` behind the middleware `M`: see [`Layer`].
#[derive(Clone)]
pub struct Service<S, M> {
    inner: S,
    middleware: M,
}

impl<S: Inner<B>, M: Middleware, B: Send + 'static> tower::Service<http::Request<B>> for Service<S, M> {
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = BoxFuture<Result<GrpcResponse, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.middleware.call(&mut self.inner, request)
    }
}
