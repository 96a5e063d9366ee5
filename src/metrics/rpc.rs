//! RPC metrics: a tower layer, outermost in front of every service, that
//! counts each call by service, method and gRPC status code and observes
//! its duration (until the response body ends: a stream's whole life).
//!
//! Labels come only from fixed tables: the method paths of the services this
//! server mounts (from their descriptor sets); any other path is `unknown`.
//! The code is the `grpc-status` of the response headers (trailers-only
//! answers, the usual form of an error) or of the trailers; a response body
//! dropped before its trailers (the client went away) counts as `CANCELLED`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::middleware::{BoxFuture, GrpcResponse, Inner, Middleware};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// `service`, `method`, `code`.
pub type RpcLabels = [(&'static str, &'static str); 3];

fn seconds_histogram() -> Histogram {
    Histogram::new(super::log::SECONDS_BUCKETS)
}

/// The RPC counters, shared by every clone of the layer.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    /// Calls answered, by service, method and gRPC code.
    pub calls: Family<RpcLabels, Counter>,
    /// Call durations, by service, method and gRPC code.
    pub seconds: Family<RpcLabels, Histogram, fn() -> Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            calls: Family::default(),
            seconds: Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
        }
    }
}

/// Path -> (service, method), for every method of the services mounted.
fn methods() -> &'static HashMap<String, (&'static str, &'static str)> {
    static METHODS: OnceLock<HashMap<String, (&'static str, &'static str)>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut out = HashMap::new();
        let mut add = |service: &str, method: &str| {
            // Leaked once per process: a fixed, small set of names.
            let s: &'static str = Box::leak(service.to_string().into_boxed_str());
            let m: &'static str = Box::leak(method.to_string().into_boxed_str());
            out.insert(format!("/{s}/{m}"), (s, m));
        };
        for set in [
            crate::api::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = <descriptor::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in set.file {
                for service in file.service {
                    let full = format!("{}.{}", file.package, service.name);
                    for method in service.method {
                        add(&full, &method.name);
                    }
                }
            }
        }
        for service in [
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            add(service, "ServerReflectionInfo");
        }
        out
    })
}

/// The (service, method) labels of a request path; `unknown` for any path
/// that is not a method of this server.
pub fn labels_of(path: &str) -> (&'static str, &'static str) {
    methods().get(path).copied().unwrap_or(("unknown", "unknown"))
}

/// The name of a gRPC status code (`grpc-status` value).
pub fn code_name(value: &[u8]) -> &'static str {
    match value {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The minimal descriptor messages needed to list services and methods
/// (field numbers of google/protobuf/descriptor.proto).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorSet {
        /// The files of the set.
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<FileDescriptorProto>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorProto {
        /// The file's protobuf package.
        #[prost(string, tag = "2")]
        pub package: String,
        /// The services the file defines.
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<ServiceDescriptorProto>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServiceDescriptorProto {
        /// The service's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The service's methods.
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<MethodDescriptorProto>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MethodDescriptorProto {
        /// The method's name.
        #[prost(string, tag = "1")]
        pub name: String,
    }
}

/// See the module documentation.
pub type RpcLayer = crate::middleware::Layer<Rpc>;

/// The middleware of [`RpcLayer`].
#[derive(Clone)]
pub struct Rpc {
    pub(super) metrics: RpcMetrics,
}

impl Middleware for Rpc {
    fn call<S: Inner<B>, B: Send + 'static>(
        &self,
        inner: &mut S,
        request: http::Request<B>,
    ) -> BoxFuture<Result<GrpcResponse, S::Error>> {
        let (service, method) = labels_of(request.uri().path());
        let mut call = Call {
            metrics: self.metrics.clone(),
            service,
            method,
            started: Instant::now(),
            code: None,
            done: false,
        };
        let answer = inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            call.code = response
                .headers()
                .get("grpc-status")
                .map(|v| code_name(v.as_bytes()));
            if call.code.is_some() {
                // Trailers-only: the call is over (the body is empty).
                call.finish();
            }
            Ok(response.map(|inner| tonic::body::Body::new(MeteredBody { inner, call })))
        })
    }
}

/// One call being measured; recorded once, when its code is known or when
/// its body is dropped.
struct Call {
    metrics: RpcMetrics,
    service: &'static str,
    method: &'static str,
    started: Instant,
    code: Option<&'static str>,
    done: bool,
}

impl Call {
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let labels = [
            ("service", self.service),
            ("method", self.method),
            ("code", self.code.unwrap_or("CANCELLED")),
        ];
        self.metrics.calls.get_or_create(&labels).inc();
        self.metrics
            .seconds
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The response body, watched for its trailers.
struct MeteredBody {
    inner: tonic::body::Body,
    call: Call,
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.code = Some(code_name(code.as_bytes()));
                    this.call.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.call.code.get_or_insert("INTERNAL");
                this.call.finish();
            }
            Poll::Ready(None) => {
                // Ended without trailers: a trailers-only answer (already
                // recorded) or a body that ended early.
                this.call.code.get_or_insert("UNKNOWN");
                this.call.finish();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mounted_methods_are_labels() {
        assert_eq!(
            labels_of("/regularization.v1.Caseworker/GetCase"),
            ("regularization.v1.Caseworker", "GetCase")
        );
        assert_eq!(
            labels_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        for p in [
            "",
            "/",
            "/regularization.v1.Caseworker/C-0123456789abcdef0123",
            "/x/y",
        ] {
            assert_eq!(labels_of(p), ("unknown", "unknown"), "{p}");
        }
    }

    #[test]
    fn status_codes_have_their_names() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_name(b"99"), "UNKNOWN");
    }
}
