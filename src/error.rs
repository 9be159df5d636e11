//! Errors of the native boundary: a kind with a stable `code`, thrown into JS as an Error
//! whose `code` property is that code (napi-rs sets it from the error's status), so JS tests
//! the code, never the message.

use std::fmt;

/// What went wrong inside the addon, as JS sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An option given to the constructor is out of range or of the wrong kind.
    InvalidOption,
    /// The address could not be bound (in use, not permitted, not local).
    Listen,
    /// A status code outside what HTTP allows.
    InvalidStatus,
    /// A header name or value that would corrupt the response (CR, LF, NUL, bad token).
    InvalidHeader,
    /// The server or request is not in a state where the call makes sense.
    InvalidState,
    /// The request body is larger than `maxBodySize`.
    BodyTooLarge,
    /// The client aborted the request body.
    BodyAborted,
    /// `upgradeWebSocket` on a request that is not a WebSocket upgrade (not GET over
    /// HTTP/1.1 with `Connection: upgrade` and `Upgrade: websocket`).
    WsNotUpgrade,
    /// The upgrade's `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    WsBadKey,
    /// The upgrade's `Sec-WebSocket-Version` is not 13.
    WsBadVersion,
    /// The `protocol` chosen is not one the client offered.
    WsBadProtocol,
    /// A failure of Node-API itself (an argument of the wrong type, out of memory, a
    /// panic): its status is the code, as napi-rs gives it.
    Napi(napi::Status),
    /// A `tls` option that cannot be used: bad PEM, a key that does not match its
    /// certificate, an encrypted key without (or with the wrong) passphrase.
    TlsConfig,
    /// A response with no body declares a nonzero `Content-Length` (other than for HEAD).
    ContentLengthWithoutBody,
}

impl ErrorKind {
    /// The stable `code` property JS callers test. napi-rs takes it from the status of
    /// the error it throws (`napi::Error<ErrorKind>`).
    pub fn code(&self) -> &str {
        match self {
            ErrorKind::InvalidOption => "ERR_INVALID_OPTION",
            ErrorKind::Listen => "ERR_LISTEN",
            ErrorKind::InvalidStatus => "ERR_INVALID_STATUS",
            ErrorKind::InvalidHeader => "ERR_INVALID_HEADER",
            ErrorKind::InvalidState => "ERR_INVALID_STATE",
            ErrorKind::BodyTooLarge => "ERR_BODY_TOO_LARGE",
            ErrorKind::BodyAborted => "ERR_BODY_ABORTED",
            ErrorKind::WsNotUpgrade => "ERR_WS_NOT_UPGRADE",
            ErrorKind::WsBadKey => "ERR_WS_BAD_KEY",
            ErrorKind::WsBadVersion => "ERR_WS_BAD_VERSION",
            ErrorKind::WsBadProtocol => "ERR_WS_BAD_PROTOCOL",
            ErrorKind::Napi(status) => status.as_ref(),
            ErrorKind::TlsConfig => "ERR_TLS_CONFIG",
            ErrorKind::ContentLengthWithoutBody => "ERR_CONTENT_LENGTH_WITHOUT_BODY",
        }
    }
}

impl AsRef<str> for ErrorKind {
    fn as_ref(&self) -> &str {
        self.code()
    }
}

/// An error raised across the boundary: a kind and a message for people.
#[derive(Debug)]
pub struct BridgeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BridgeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BridgeError { kind, message: message.into() }
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BridgeError {}

impl From<napi::Error> for BridgeError {
    fn from(e: napi::Error) -> Self {
        BridgeError::new(ErrorKind::Napi(e.status), e.reason)
    }
}

/// The error napi-rs throws: a JS Error with `code` set to the kind's code.
impl From<BridgeError> for napi::Error<ErrorKind> {
    fn from(e: BridgeError) -> Self {
        napi::Error::new(e.kind, e.message)
    }
}

pub type BridgeResult<T> = Result<T, BridgeError>;
