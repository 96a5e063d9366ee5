//! Errors tonic raises itself, before a handler sees the request, restated
//! in this service's contract (caseworker.proto, "Errors").
//!
//! - A request that is not valid protobuf (for example a string field that
//!   is not UTF-8) is answered by tonic with INTERNAL ("failed to decode
//!   Protobuf message: ..."), which gRPC reserves for server faults. It is
//!   the client's: INVALID_ARGUMENT with a `BadRequest` naming the field
//!   prost reports (`person.given_names`), or `request` when it names none.
//! - A request over the size limit is answered by tonic with OUT_OF_RANGE;
//!   every other limit is RESOURCE_EXHAUSTED: so is this one, with a
//!   `QuotaFailure` on `request`.
//!
//! Both arrive as a response carrying only headers (`grpc-status`), which is
//! how tonic answers a call refused before its handler runs; the layer
//! replaces such a response and lets every other one through untouched.

use tonic::{Code, Status};

use super::status::{invalid_argument, limit_exceeded};
use crate::limits::GRPC_MESSAGE_BYTES_MAX;
use crate::middleware::{BoxFuture, GrpcResponse, Inner, Middleware};

const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message";
const TOO_LARGE_PREFIX: &str = "Error, decoded message length too large";

/// Installs [`WireErrors`] in front of the services.
pub type WireErrorLayer = crate::middleware::Layer<WireErrors>;

/// See the module documentation.
#[derive(Clone, Copy, Default)]
pub struct WireErrors;

impl Middleware for WireErrors {
    fn call<S: Inner<B>, B: Send + 'static>(
        &self,
        inner: &mut S,
        request: http::Request<B>,
    ) -> BoxFuture<Result<GrpcResponse, S::Error>> {
        let call = inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            Ok(match restate(response.headers()) {
                Some(status) => status.into_http(),
                None => response,
            })
        })
    }
}

/// The status that replaces a tonic-raised one, if the headers carry one.
fn restate(headers: &http::HeaderMap) -> Option<Status> {
    let code = headers.get("grpc-status")?.to_str().ok()?;
    let wanted = match code.parse::<i32>().ok().map(Code::from_i32)? {
        c @ (Code::Internal | Code::OutOfRange) => c,
        _ => return None,
    };
    let message = percent_decode(headers.get("grpc-message")?.as_bytes());
    match wanted {
        Code::Internal if message.starts_with(DECODE_ERROR_PREFIX) => {
            let (field, reason) = decode_error_field(&message);
            Some(invalid_argument(&field, &reason))
        }
        Code::OutOfRange if message.starts_with(TOO_LARGE_PREFIX) => Some(limit_exceeded(
            "request",
            &format!("a request message may hold at most {GRPC_MESSAGE_BYTES_MAX} bytes"),
        )),
        _ => None,
    }
}

/// The request field path and the reason in a prost decode error's text:
/// `failed to decode Protobuf message: PersonalData.given_names:
/// RegisterPersonRequest.person: invalid string value: data is not UTF-8
/// encoded` names `person.given_names` (prost lists the innermost message first).
fn decode_error_field(message: &str) -> (String, String) {
    let rest = message
        .strip_prefix(DECODE_ERROR_PREFIX)
        .unwrap_or(message)
        .trim_start_matches(':')
        .trim();
    let mut fields = Vec::new();
    let mut reason = rest;
    while let Some((segment, tail)) = reason.split_once(": ") {
        let is_field = segment.split_once('.').is_some_and(|(message, field)| {
            message.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if !is_field {
            break;
        }
        fields.push(segment.split_once('.').map(|(_, f)| f).unwrap_or(segment));
        reason = tail;
    }
    fields.reverse();
    let field = if fields.is_empty() {
        "request".to_string()
    } else {
        fields.join(".")
    };
    (field, format!("not valid protobuf: {reason}"))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_decode_error_names_the_request_field_path() {
        let (field, reason) = decode_error_field(
            "failed to decode Protobuf message: PersonalData.given_names: RegisterPersonRequest.person: \
             invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(field, "person.given_names");
        assert_eq!(
            reason,
            "not valid protobuf: invalid string value: data is not UTF-8 encoded"
        );
        let (field, _) = decode_error_field("failed to decode Protobuf message: buffer underflow");
        assert_eq!(field, "request");
    }

    #[test]
    fn percent_encoded_messages_are_decoded() {
        assert_eq!(percent_decode(b"a%20b%3A%zz%"), "a b:%zz%");
    }
}
