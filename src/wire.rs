//! What Rust and JS must agree on, declared once: the layout and kinds of the records
//! `drain` writes, request flags, abort reasons, body error kinds, `bodyPull` results,
//! content-type and method codes, respond call flags, and the slot-id layout. The addon
//! exports them as its `constants` object, which `lib/native.ts` reads at load; no number
//! is written twice.
//!
//! To add a record kind or code: one line in `constants!` below, then read it by name in
//! `lib/native.ts` (`test/native.test.mjs` fails if the TS side holds a number of its own).

macro_rules! constants {
    ($($(#[doc = $doc:literal])* $name:ident = $value:expr;)*) => {
        $($(#[doc = $doc])* pub(crate) const $name: u32 = $value;)*
        /// Every constant by its name in JS.
        pub(crate) const ALL: &[(&str, u32)] = &[$((stringify!($name), $name)),*];
    };
}

constants! {
    /// Words per drained record: `[kind, id, arg, urlLength]`; `urlLength` is the length of
    /// the URL at the start of a REQUEST record's head text (`request::HeadText`, the rest
    /// being its packed headers), 0 in other records.
    RECORD_WORDS = 4;
    /// A new request. `arg`: a method code in the low byte (`METHOD_MASK`), flags above it.
    RECORD_REQUEST = 1;
    /// A chunk of a streamed body arrived; `bodyPull` returns it.
    RECORD_BODY_DATA = 2;
    /// A streamed body ended; `bodyPull` returns `PULL_END`.
    RECORD_BODY_END = 3;
    /// The whole body is buffered; `bodyCollect` returns it.
    RECORD_BODY_FULL = 4;
    /// Reading the body failed. `arg`: a `BODY_*` error kind.
    RECORD_BODY_ERROR = 5;
    /// The request was abandoned. `arg`: an `ABORT_*` reason.
    RECORD_ABORT = 6;
    /// A streamed response can take more chunks.
    RECORD_WRITABLE = 7;
    /// `close()` finished: no connection is left.
    RECORD_CLOSED = 8;
    /// A WebSocket (`id`: its socket id) is open; its agreed extensions are the next
    /// item of `texts`.
    RECORD_WS_OPEN = 9;
    /// A WebSocket message; its payload is the next item of `texts` (a string for text,
    /// a Buffer for binary). `arg`: `WS_TEXT` or `WS_BINARY`, or `WS_POOLED` with the
    /// length in bits 8 and up (the next item is an ArrayBuffer shared by the batch's
    /// small binary messages; word 3 is the message's byte offset in it, in its low 16
    /// bits, and the ArrayBuffer's number in this drain above them, as `WS_STAGE_VIEW`
    /// takes them), or `WS_POOLED_SAME` as `WS_POOLED` but with no item: the message is in
    /// the same ArrayBuffer as the pooled message before it.
    RECORD_WS_MESSAGE = 10;
    /// A pong, or with `arg` `WS_PING` a ping; its payload (a Buffer) is the next item
    /// of `texts`.
    RECORD_WS_PONG = 11;
    /// A WebSocket's send queue fell below its low-water mark.
    RECORD_WS_DRAIN = 12;
    /// A WebSocket closed; its reason is the next item of `texts`. `arg`: the close code,
    /// plus `WS_CLEAN` when both sides sent a close frame.
    RECORD_WS_CLOSE = 13;

    /// WS_MESSAGE kinds.
    WS_TEXT = 1;
    WS_BINARY = 2;
    /// WS_MESSAGE kind: a small binary message in a shared ArrayBuffer.
    WS_POOLED = 3;
    /// WS_MESSAGE kind: as `WS_POOLED`, in the previous pooled message's ArrayBuffer.
    WS_POOLED_SAME = 4;
    /// WS_MESSAGE kind: a small ASCII text message, with its length in bits 8 and up: the
    /// next item of `texts` is a string shared by the batch's small text messages, word 3
    /// the message's offset in it and the string's number, as for `WS_POOLED`.
    WS_TEXT_POOLED = 5;
    /// WS_MESSAGE kind: as `WS_TEXT_POOLED`, in the previous pooled text message's string.
    WS_TEXT_POOLED_SAME = 6;
    /// WS_CLOSE flag: the closing handshake completed.
    WS_CLEAN = 1 << 16;
    /// WS_PONG `arg`: the frame was a ping (answered already), not a pong.
    WS_PING = 1;
    /// `wsSendStaged`: the staging area (`wsStage`) starts with two 32-bit words, `[sid,
    /// length]`, this many bytes,
    WS_STAGE_HEAD = 8;
    /// then room for a message of this many bytes (`websocket::COALESCE_LIMIT`: the size
    /// framed at once into the socket's queue).
    WS_STAGE_BYTES = 2 * 1024;
    /// `wsSendStaged` length flag: not to be compressed.
    WS_STAGE_NO_COMPRESS = 1 << 31;
    /// `wsSendStaged` length flag: the bytes are not in the area but are the small binary
    /// message JS was last given (a view of a drain's shared ArrayBuffer, unchanged or
    /// changed in place): the 32-bit word after the head is its record's word 3, the
    /// ArrayBuffer's number in that drain (bits 16 and up) and the message's offset in it.
    WS_STAGE_VIEW = 1 << 30;
    /// `wsSendStaged` length flag, with `WS_STAGE_VIEW`: a text message equal to the small
    /// ASCII text message JS was last given, whose bytes are in the last drain's text arenas.
    WS_STAGE_TEXT = 1 << 29;

    /// The bits of a REQUEST record's `arg` that hold its method code.
    METHOD_MASK = 0xff;
    /// REQUEST flag: the request has a body (possibly empty but declared).
    FLAG_HAS_BODY = 1 << 8;
    /// REQUEST flag: a body whose declared length, from `body::DEFER_MIN` to
    /// `body::COLLECT_RESERVE_MAX`, gets a Buffer of its own when read: JS hands at most one
    /// such request a turn to its handler (lib/server.ts, `#held`). HTTP/1.1 only: on HTTP/2
    /// a held stream's body would fill the window the others' bodies need (`js_side.rs`).
    FLAG_LARGE_BODY = 1 << 9;

    /// ABORT reason: the client closed the connection.
    ABORT_CLIENT_GONE = 1;
    /// ABORT reason: the listener did not respond within the `timeout` option.
    ABORT_TIMEOUT = 2;
    /// ABORT reason: the client half-closed after its request; the answer is still sent.
    ABORT_HALF_CLOSED = 3;

    /// BODY_ERROR kind: more bytes than `maxBodySize`.
    BODY_TOO_LARGE = 1;
    /// BODY_ERROR kind: the client closed the connection or sent a malformed body.
    BODY_ABORTED = 2;

    /// `bodyPull` result: the body has ended.
    PULL_END = 0;
    /// `bodyPull` result: nothing yet; a BODY_DATA, BODY_END or BODY_ERROR record follows.
    PULL_PENDING = 1;
    /// `bodyCollect` result: nothing yet, and the body's Buffer waits for a later turn of
    /// the loop: JS calls `bodyResume` from a `setImmediate` (`Core::body_collect`).
    COLLECT_DEFERRED = 2;

    /// Content-type code: none (or given in the header list).
    CT_NONE = 0;
    /// Content-type code: `text/plain;charset=UTF-8`.
    CT_TEXT = 1;
    /// Content-type code: `application/json`.
    CT_JSON = 2;
    /// Content-type code: `application/octet-stream`.
    CT_BYTES = 3;
    /// Content-type code: `application/x-www-form-urlencoded;charset=UTF-8`.
    CT_FORM = 4;
    /// The bits of a respond call's `flags` that hold its content-type code.
    CT_MASK = 0xff;
    /// Respond call flag: the reply also frees the request's slot.
    RESPOND_RELEASE = 1 << 8;
    /// A respond call's `flags` hold the response's status from this bit up (one number
    /// converted less per call).
    RESPOND_STATUS_SHIFT = 16;

    /// Method code of a method not in `METHODS`: JS asks for its name (`requestMethod`).
    METHOD_OTHER = METHODS.len() as u32;

    /// Bits of a slot id that hold the slot's index; the generation is above them, so a
    /// stale id never reaches a later request in the same slot.
    INDEX_BITS = 20;
    /// The index bits of a slot id.
    INDEX_MASK = (1 << INDEX_BITS) - 1;
}

// A method code fits below the flags of a REQUEST record.
const _: () = assert!(METHOD_OTHER <= METHOD_MASK && METHOD_MASK < FLAG_HAS_BODY && FLAG_HAS_BODY < FLAG_LARGE_BODY);
// A content-type code fits below the flags of a respond call.
const _: () = assert!(CT_FORM <= CT_MASK && CT_MASK < RESPOND_RELEASE);
// The flags fit below the status, and any status (up to 999) above them in a 31-bit integer.
const _: () = assert!(RESPOND_RELEASE < 1 << RESPOND_STATUS_SHIFT && 999u32 << RESPOND_STATUS_SHIFT < 1 << 31);

/// The methods with a code of their own, the code being the index.
pub(crate) const METHODS: [http::Method; 7] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::OPTIONS,
    http::Method::PATCH,
];

/// The method code of `m`: its index in `METHODS`, or `METHOD_OTHER`.
pub(crate) fn method_code(m: &http::Method) -> u32 {
    METHODS.iter().position(|x| x == m).map_or(METHOD_OTHER, |i| i as u32)
}

/// The value of a content-type code, `None` for `CT_NONE` and unknown codes.
pub(crate) const fn content_type(code: u32) -> Option<&'static str> {
    Some(match code {
        CT_TEXT => "text/plain;charset=UTF-8",
        CT_JSON => "application/json",
        CT_BYTES => "application/octet-stream",
        CT_FORM => "application/x-www-form-urlencoded;charset=UTF-8",
        _ => return None,
    })
}

/// The `constants` export: every constant by name, and `METHODS` as an array of names.
pub(crate) fn to_js<'e>(env: &'e napi::Env) -> napi::Result<napi::bindgen_prelude::Object<'e>> {
    let mut object = napi::bindgen_prelude::Object::new(env)?;
    for (name, value) in ALL {
        object.set(name, *value)?;
    }
    object.set("METHODS", METHODS.iter().map(|m| m.as_str()).collect::<Vec<_>>())?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_codes_round_trip() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(method_code(m), i as u32);
        }
        assert_eq!(method_code(&http::Method::CONNECT), METHOD_OTHER);
    }

    #[test]
    fn names_and_record_kinds_are_distinct() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        let mut kinds: Vec<u32> =
            ALL.iter().filter(|(n, _)| n.starts_with("RECORD_") && *n != "RECORD_WORDS").map(|(_, v)| *v).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), 13);
        assert!(!kinds.contains(&0), "a zeroed record is no kind");
    }

    #[test]
    fn content_type_codes_name_valid_values() {
        assert!(content_type(CT_NONE).is_none());
        for code in [CT_TEXT, CT_JSON, CT_BYTES, CT_FORM] {
            let v = content_type(code).unwrap();
            assert!(http::HeaderValue::from_str(v).is_ok());
        }
    }
}
