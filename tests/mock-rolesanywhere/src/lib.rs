//! A verifying IAM Roles Anywhere `CreateSession` endpoint for tests and the demo.
//!
//! [`Server`] serves `POST /sessions` over TLS on loopback and checks what the real
//! service checks. These are the signing scope, `X-Amz-Date` within 5 minutes of its
//! clock, the signature with the leaf's public key, the chain up to the root of the named
//! trust anchor, validity dates, and the JSON body. It sends fresh random credentials or
//! an error in the real shape, and a script of [`Scripted`] steps makes it fail on
//! purpose.
//!
//! ```no_run
//! use mock_rolesanywhere::{Config, Scripted, Server};
//!
//! let server = Server::start(Config::test_pki()?)?;
//! server.push_script(Scripted::Status {
//!     status: 503,
//!     error_type: "ServiceUnavailableException".into(),
//!     message: "try again".into(),
//! });
//! // Point the client at server.url(), trusting server.ca_pem_path().
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The canonicaliser in [`canonical`] is written independently of the agent's, so a bug
//! in one does not hide in the other.
#![forbid(unsafe_code)]

mod body;
pub mod canonical;
mod clock;
mod config;
mod http;
mod responses;
mod script;
mod server;
mod tls;
mod verify;

pub use body::{DEFAULT_DURATION_SECONDS, MAX_DURATION_SECONDS, MIN_DURATION_SECONDS};
pub use config::{
    Config, EC_TRUST_ANCHOR_ARN, PROFILE_ARN, REGION, ROLE_ARN, RSA_TRUST_ANCHOR_ARN, pki_path,
    read_root_der,
};
pub use responses::{
    ACCESS_DENIED, INVALID_SIGNATURE, IssuedCredentials, RESOURCE_NOT_FOUND, Rejection,
    UNTRUSTED_CERTIFICATE, VALIDATION,
};
pub use script::Scripted;
pub use server::Server;
pub use verify::MAX_CLOCK_SKEW_SECONDS;
