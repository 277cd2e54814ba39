//! Fault injection: steps queued with [`crate::Server::push_script`], one taken per
//! request after the request is read and before it is verified.

use std::time::Duration;

/// What the server does with the next request instead of, or in addition to, the normal
/// verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scripted {
    /// Sends this status and `{"message": message}` without verifying. An empty
    /// `error_type` leaves out the `x-amzn-ErrorType` header.
    Status {
        /// The HTTP status code, such as 500 or 503.
        status: u16,
        /// The `x-amzn-ErrorType` header value, such as `ThrottlingException`.
        error_type: String,
        /// The `message` of the JSON body.
        message: String,
    },
    /// Closes the TCP connection without a response and without a TLS `close_notify`.
    Reset,
    /// Waits this long, then verifies and responds as usual. A client with a shorter
    /// timeout has gone by then, and the server logs the failed write.
    Stall(Duration),
    /// Verifies as usual and, on success, sends this text as `expiration` in place of
    /// now plus `durationSeconds`. Rejections are sent unchanged.
    Expiration(String),
    /// Runs this one request on a clock shifted by this many seconds (added to the clock
    /// offset): the `Date` header, the `X-Amz-Date` window and the expiration all use it.
    /// An `X-Amz-Date` more than 5 minutes from the shifted clock gets a 403 whose
    /// message starts with `Signature expired` or `Signature not yet current`.
    DateOffset(i64),
}
