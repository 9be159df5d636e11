//! Error kinds of the native boundary and their conversion to JS errors with a stable `code`.

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
    /// The server is not in a state where the call makes sense.
    InvalidState,
    /// A response with no body declares a nonzero `Content-Length` (other than for HEAD).
    ContentLengthWithoutBody,
}

impl ErrorKind {
    /// The stable `code` property JS callers test.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidOption => "ERR_INVALID_OPTION",
            ErrorKind::Listen => "ERR_LISTEN",
            ErrorKind::InvalidStatus => "ERR_INVALID_STATUS",
            ErrorKind::InvalidHeader => "ERR_INVALID_HEADER",
            ErrorKind::InvalidState => "ERR_INVALID_STATE",
            ErrorKind::ContentLengthWithoutBody => "ERR_CONTENT_LENGTH_WITHOUT_BODY",
        }
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

// The JS wrapper turns `[CODE] message` into an Error with `code` set; napi-rs
// errors carry only a status and a message, so the code travels in the message.
impl From<BridgeError> for napi::Error {
    fn from(e: BridgeError) -> Self {
        napi::Error::new(napi::Status::GenericFailure, format!("[{}] {}", e.kind.code(), e.message))
    }
}

pub type BridgeResult<T> = Result<T, BridgeError>;
