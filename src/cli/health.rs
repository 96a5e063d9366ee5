//! `registry health`: one gRPC health check (`grpc.health.v1.Health/Check`)
//! against a running server, for a container HEALTHCHECK, a Kubernetes exec
//! probe or an operator at a shell. No credentials are needed (the server
//! answers health checks without them).
//!
//! Prints the status (`SERVING`, `NOT_SERVING`, `SERVICE_UNKNOWN`, ...) on
//! standard output. Exit status: 0 only when the service is SERVING; 1 for
//! anything else: another status, a service the server does not know, a
//! server that cannot be reached or does not answer within `--timeout`, a
//! TLS failure. (Not 2: Docker reserves a HEALTHCHECK exit status of 2.)

use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// `registry health`
#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// The server: `http://host:port`, or `https://host:port` for TLS (then
    /// --tls-ca is needed: this build trusts no system roots).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// The service asked about: "" (the default) is liveness,
    /// `regularization.v1.Caseworker` readiness (deploy/README.md, "Health").
    #[arg(long, default_value = "")]
    pub service: String,
    /// TLS settings for an `https://` target.
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Seconds allowed for connecting and answering, in all.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Runs the check; the exit status is 0 only for SERVING.
pub fn run(args: HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let limit = Duration::from_secs(args.timeout.max(1));
    let answer = runtime.block_on(async { tokio::time::timeout(limit, check(&args)).await });
    match answer {
        Err(_) => fail(&format!(
            "no answer from {} within {} s",
            args.target,
            limit.as_secs()
        )),
        Ok(Err(e)) => fail(&e.to_string()),
        Ok(Ok(status)) => {
            println!("{}", status.as_str_name());
            if status == ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

/// Why a health check got no status.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// The TLS settings or the connection.
    #[error(transparent)]
    Connect(#[from] crate::client::ClientError),
    /// The call failed.
    #[error("health check of {service:?} at {target}: {code:?}: {message}")]
    Call {
        /// The service asked about.
        service: String,
        /// The server.
        target: String,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
}

/// One `Health/Check` call; a service the server does not know (NOT_FOUND) is SERVICE_UNKNOWN.
async fn check(args: &HealthArgs) -> Result<ServingStatus, CheckError> {
    let tls = args.tls.for_target(&args.target)?;
    let options = crate::client::ClientOptions {
        target: args.target.clone(),
        token: None,
        actor: None,
        tls,
    };
    // One attempt: a probe that waits for the server would hide that it is down.
    let channel = crate::client::connect(&options, Duration::ZERO).await?;
    let request = HealthCheckRequest {
        service: args.service.clone(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(answer) => Ok(answer.into_inner().status()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            eprintln!(
                "the server does not know the service {:?}: {}",
                args.service,
                status.message()
            );
            Ok(ServingStatus::ServiceUnknown)
        }
        Err(status) => Err(CheckError::Call {
            service: args.service.clone(),
            target: args.target.clone(),
            code: status.code(),
            message: status.message().to_string(),
        }),
    }
}
