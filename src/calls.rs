//! Every per-request call of the napi surface, declared once in `calls!` below: its JS name,
//! its arguments (read from one `napi_get_cb_info` with plain conversions) and what it does
//! to the server's `Core`. `calls(handle)`, beside the `constants` of `wire.rs` on the
//! addon's exports, makes each a plain Node-API function bound to one server: the handle
//! travels as the function's data, not as an argument; `lib/native.ts` binds them once per
//! server.
//!
//! napi-rs's generated wrapper around a function costs 130-240 ns a call (measured against
//! 55-60 ns for a plain callback: a probe addon, 5M calls of each, pinned to one core): a
//! type check per argument, a borrow scope and barrier kept in thread-local storage. Each
//! argument converted costs too (about 80 instructions for a number, 200 for an optional
//! list, callgrind), so the per-request calls take few: the respond calls pack the
//! status, the content-type code and `RESPOND_RELEASE` in one `flags` word, and take the
//! header list last, left out when there is none. Errors are thrown as napi-rs throws them, with their
//! kind's `code` (`error.rs`), and a panic becomes a thrown error, as with `catch_unwind`
//! elsewhere.
//!
//! To add a call: one entry in `calls!` (and its `Core` method), one line in
//! `lib/native.ts`'s `Calls`.
//!
//! | call | arguments | ownership and thread |
//! |---|---|---|
//! | `drain` | `Uint32Array` of `[kind, id, arg, urlLength]` records; an array | moves queued events into the slab; each WebSocket payload in `texts`; returns records written |
//! | `reschedule`, `flush` | | ring again if events remain; send gathered replies |
//! | `requestHead` | slot id | a REQUEST record's URL and packed headers as one string, once |
//! | `requestMethod/ClientAddress/ClientPort` | slot id | a method other than those with a code; the client's address; its TCP port |
//! | `requestClientCertificate` | slot id | the verified client certificate of an HTTPS request, or `null` |
//! | `requestRelease` | slot id | frees the slot; later calls with the id are no-ops |
//! | `bodyCollect` | slot id | the whole body as a Buffer, or `PULL_PENDING` when a BODY_FULL/BODY_ERROR record will follow, `COLLECT_DEFERRED` when it follows once `bodyResume` ran on a later turn |
//! | `bodyResume` | | starts the deferred bodies one turn's Buffers allow; `true` while more wait (call again on the next turn) |
//! | `bodyPull` | slot id | the next chunk as a Buffer, or `PULL_END`, `PULL_PENDING` when a BODY_* record will follow |
//! | `respondText/Bytes` | id, flags (status `<< RESPOND_STATUS_SHIFT`, ct, `RESPOND_RELEASE`), body, flat header list (left out: none) | queue the reply; flushed per batch; bytes copied; `RESPOND_RELEASE` also frees the slot |
//! | `respondStage`, `respondTextStaged` | two words' bytes / body, flat header list (left out: none) | registers JS's `[id, flags]` area (kept alive by JS) / `respondText` with the id and flags JS wrote there, which costs no conversion of either |
//! | `respondEmpty` | id, flags, flat header list (left out: none) | as `respondText` |
//! | `respondStream` | id, flags (status and ct), flat header list (left out: none) | starts a streamed reply |
//! | `respondBytesShared` | as `respondBytes`, a large typed array | held, not copied, until written; JS must not change it |
//! | `respondBytesStaged`, `respondBytesSharedStaged`, `respondEmptyStaged`, `respondStreamStaged` | the call's arguments less the id and flags | the call, with the id and flags JS wrote to `respondStage`'s area |
//! | `streamWrite`, `streamEnd` | id, chunk (copied) / failed | `false` when full: wait for a WRITABLE record |
//! | `streamWriteShared` | id, a large typed array | as `streamWrite`, held instead of copied |
//! | `wsUpgrade` | id, protocol or null, maxPayload, idleTimeoutMs, compress (negative/0: default) | checks the upgrade; returns a socket id; throws `ERR_WS_*` |
//! | `wsAccept`, `wsAbandon` | id, socket id, release, headers? (name/value pairs) / socket id | queue the 101 (the socket opens later) / the socket closes 1006 |
//! | `wsSendText/Bytes` | socket id, message (copied; in the in-thread mode a large one may be written at once instead), compress? (left out: true, one conversion less per send) | queued for the socket's task; bytes, -1 queued, 0 dropped |
//! | `wsStage`, `wsSendStaged` | an ArrayBuffer's bytes / none | registers JS's staging area (kept alive by JS) / `wsSendBytes` of the message JS copied there (`WS_STAGE_HEAD` bytes, socket id and length with its `WS_STAGE_NO_COMPRESS` bit, then the bytes, or with `WS_STAGE_VIEW` the arena number and offset of the message JS was last given); the status replaces the socket id |
//! | `wsHearDrain` | socket id | DRAIN records are posted for the socket from now on (none before: no one to tell) |
//! | `wsOwnBuffers` | socket id, on | the socket's binary messages above 1 KiB each get an ArrayBuffer of their own (binaryType "arraybuffer"), not a share of the drain's |
//! | `wsClose`, `wsPing` | socket id, code, reason / data (copied) | queue a close or ping frame |
//! | `wsBuffered`, `wsRemoteAddress`, `wsCount` | socket id | bytes queued unwritten; the client's IP; sockets open |
//! | `wsSubscribe`, `wsIsSubscribed`, `wsTopics`, `wsSubscriberCount` | socket id, topic, on | the topic table (pubsub.rs) |
//! | `wsPublishText/Bytes` | sender's socket id (0: none), topic, message (copied), compress | one frame for all subscribers but the sender; returns how many took it |
//!
//! Everything runs on the JS thread that created the server.

use crate::error::BridgeResult;
use crate::registry::with_core;
use crate::response::HeaderList;
use crate::wire::{CT_MASK, RESPOND_RELEASE, RESPOND_STATUS_SHIFT};

use napi::bindgen_prelude::{BufferSlice, Either, FromNapiValue, JsValue, Object, ToNapiValue};
use napi::bindgen_prelude::{Uint32ArraySlice, Uint8ArraySlice};
use napi::{check_status, sys, Env, JsError, Result};
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;
use std::ptr;

/// The status a respond call's `flags` carry.
fn status(flags: u32) -> u32 {
    flags >> RESPOND_STATUS_SHIFT
}

/// The `[id, flags]` JS wrote to the area `respondStage` registered, for the staged respond
/// calls.
fn staged(core: &crate::core::Core) -> BridgeResult<(u32, u32)> {
    core.respond_staged().ok_or_else(|| crate::core::invalid_state("respondStage was not called"))
}

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Declares the calls: `"jsName" => fn name(core, env; arg: Type, …) -> Return { body }`.
/// Each reads its arguments in order (`FromNapiValue`, no type check beyond the
/// conversion's own), runs `body` with the `Core` of the server its function was bound to,
/// and converts what it returns (`Returned`).
macro_rules! calls {
    ($($(#[doc = $doc:literal])* $js:literal => fn $name:ident($core:ident, $env:ident $(; $($arg:ident: $ty:ty),*)?) -> $ret:ty $body:block)*) => {
        $(
            $(#[doc = $doc])*
            unsafe extern "C" fn $name(raw: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
                const ARGS: usize = 0 $($(+ { let _ = stringify!($arg); 1 })*)?;
                // SAFETY: `raw` and `info` are this callback's own, and each value read is
                // one of its arguments.
                unsafe {
                    call::<ARGS>(raw, info, |$env, server, argv| {
                        #[allow(unused_mut, unused_variables)]
                        let mut argv = argv.iter().copied();
                        $($(#[allow(unused_mut)] let mut $arg: $ty = arg(raw, &mut argv)?;)*)?
                        let result: $ret = with_core(server, |$core| $body)?;
                        Ok(Returned::into_js(result, raw)?)
                    })
                }
            }
        )*

        /// The calls by their JS names.
        const CALLS: &[(&CStr, Callback)] = &[$(($js, $name)),*];
    };
}

calls! {
    /// `drain(records, texts)`: see `Core::drain`.
    c"drain" => fn drain(core, env; records: Uint32ArraySlice<'_>, texts: Object<'_>) -> u32 {
        core.drain(env, records, &mut texts)
    }
    /// `reschedule()`: rings the doorbell again if events are still queued.
    c"reschedule" => fn reschedule(core, _env) -> () {
        core.reschedule();
        Ok(())
    }
    /// `flush()`: sends the replies gathered since the last flush.
    c"flush" => fn flush(core, _env) -> () {
        core.flush();
        Ok(())
    }
    /// `requestHead(id)`: the head text of a REQUEST record (`Core::request_head`).
    c"requestHead" => fn request_head(core, env; id: u32) -> Option<napi::JsString<'_>> {
        core.request_head(env, id)
    }
    /// `requestMethod(id)`: the method of a request whose code is `METHOD_OTHER`.
    c"requestMethod" => fn request_method(core, _env; id: u32) -> Option<String> {
        Ok(core.request_method(id))
    }
    /// `requestClientAddress(id)`: the client's IP address.
    c"requestClientAddress" => fn request_client_address(core, _env; id: u32) -> Option<String> {
        Ok(core.request_client_address(id))
    }
    /// `requestClientPort(id)`: the client's TCP port.
    c"requestClientPort" => fn request_client_port(core, _env; id: u32) -> Option<u32> {
        Ok(core.request_client_port(id))
    }
    /// `requestTimeout(id, ms)`: see `Core::request_timeout`.
    c"requestTimeout" => fn request_timeout(core, _env; id: u32, ms: f64) -> () {
        core.request_timeout(id, ms);
        Ok(())
    }
    /// `requestClientCertificate(id)`: the verified client certificate of an HTTPS request
    /// (mTLS), or `null`.
    c"requestClientCertificate" => fn request_client_certificate(core, _env; id: u32) -> Option<crate::tls::ClientCertificateInfo> {
        Ok(core.request_client_certificate(id))
    }
    /// `requestRelease(id)`: frees the slot; a request still unanswered gets a 500.
    c"requestRelease" => fn request_release(core, _env; id: u32) -> () {
        core.request_release(id);
        Ok(())
    }
    /// `bodyCollect(id)`: see `Core::body_collect`.
    c"bodyCollect" => fn body_collect(core, env; id: u32) -> Either<BufferSlice<'_>, u32> {
        core.body_collect(env, id)
    }
    /// `bodyResume()`: see `Core::body_resume`.
    c"bodyResume" => fn body_resume(core, env) -> bool {
        Ok(core.body_resume(env))
    }
    /// `bodyPull(id)`: see `Core::body_pull`.
    c"bodyPull" => fn body_pull(core, env; id: u32) -> Either<BufferSlice<'_>, u32> {
        core.body_pull(env, id)
    }
    /// `respondText(id, flags, body, headers?)`: see `Core::respond_text`.
    c"respondText" => fn respond_text(
        core, _env; id: u32, flags: u32, body: Utf8, headers: Trailing<HeaderList>
    ) -> () {
        core.respond_text(id, status(flags), flags & CT_MASK, headers.0, body.0, flags & RESPOND_RELEASE != 0)
    }
    /// `respondTextStaged(body, headers?)`: `respondText` with the id and flags JS wrote to
    /// the area `respondStage` registered. Read after the arguments are converted: a
    /// string and lib/'s own list of strings, whose conversion runs no JS that could
    /// write the area again.
    c"respondTextStaged" => fn respond_text_staged(core, _env; body: Utf8, headers: Trailing<HeaderList>) -> () {
        let (id, flags) = staged(core)?;
        core.respond_text(id, status(flags), flags & CT_MASK, headers.0, body.0, flags & RESPOND_RELEASE != 0)
    }
    /// `respondStage(area)`: registers the `[id, flags]` words of `respondTextStaged`.
    c"respondStage" => fn respond_stage(core, _env; area: ViewBytes<'_>) -> () {
        core.respond_stage(area.0.as_ptr(), area.0.len());
        Ok(())
    }
    /// `respondBytes(id, flags, body, headers?)`: the body is copied before this returns
    /// (`Core::respond_bytes`).
    c"respondBytes" => fn respond_bytes(
        core, _env; id: u32, flags: u32, body: &mut [u8], headers: Trailing<HeaderList>
    ) -> () {
        core.respond_bytes(id, status(flags), flags & CT_MASK, headers.0, body, flags & RESPOND_RELEASE != 0)
    }
    /// `respondBytesShared(id, flags, body, headers?)`: see `Core::respond_bytes_shared`.
    c"respondBytesShared" => fn respond_bytes_shared(
        core, env; id: u32, flags: u32, body: Uint8ArraySlice<'_>, headers: Trailing<HeaderList>
    ) -> () {
        let release = flags & RESPOND_RELEASE != 0;
        core.respond_bytes_shared(env, id, status(flags), flags & CT_MASK, headers.0, body, release)
    }
    /// `respondEmpty(id, flags, headers?)`: see `Core::respond_empty`.
    c"respondEmpty" => fn respond_empty(
        core, _env; id: u32, flags: u32, headers: Trailing<HeaderList>
    ) -> () {
        core.respond_empty(id, status(flags), flags & CT_MASK, headers.0, flags & RESPOND_RELEASE != 0)
    }
    /// `respondStream(id, flags, headers?)`: see `Core::respond_stream`.
    c"respondStream" => fn respond_stream(
        core, _env; id: u32, flags: u32, headers: Trailing<HeaderList>
    ) -> () {
        core.respond_stream(id, status(flags), flags & CT_MASK, headers.0)
    }
    /// `respondBytesStaged(body, headers?)`: `respondBytes` with the id and flags staged, as
    /// `respondTextStaged` takes them (read after the arguments are converted: a typed
    /// array and lib/'s own list of strings, whose conversion runs no JS).
    c"respondBytesStaged" => fn respond_bytes_staged(
        core, _env; body: &mut [u8], headers: Trailing<HeaderList>
    ) -> () {
        let (id, flags) = staged(core)?;
        core.respond_bytes(id, status(flags), flags & CT_MASK, headers.0, body, flags & RESPOND_RELEASE != 0)
    }
    /// `respondBytesSharedStaged(body, headers?)`: `respondBytesShared`, staged.
    c"respondBytesSharedStaged" => fn respond_bytes_shared_staged(
        core, env; body: Uint8ArraySlice<'_>, headers: Trailing<HeaderList>
    ) -> () {
        let (id, flags) = staged(core)?;
        let release = flags & RESPOND_RELEASE != 0;
        core.respond_bytes_shared(env, id, status(flags), flags & CT_MASK, headers.0, body, release)
    }
    /// `respondEmptyStaged(headers?)`: `respondEmpty`, staged.
    c"respondEmptyStaged" => fn respond_empty_staged(core, _env; headers: Trailing<HeaderList>) -> () {
        let (id, flags) = staged(core)?;
        core.respond_empty(id, status(flags), flags & CT_MASK, headers.0, flags & RESPOND_RELEASE != 0)
    }
    /// `respondStreamStaged(headers?)`: `respondStream`, staged.
    c"respondStreamStaged" => fn respond_stream_staged(core, _env; headers: Trailing<HeaderList>) -> () {
        let (id, flags) = staged(core)?;
        core.respond_stream(id, status(flags), flags & CT_MASK, headers.0)
    }
    /// `streamWrite(id, chunk)`: see `Core::stream_write`.
    c"streamWrite" => fn stream_write(core, _env; id: u32, chunk: &mut [u8]) -> bool {
        core.stream_write(id, chunk)
    }
    /// `streamWriteShared(id, chunk)`: see `Core::stream_write_shared`.
    c"streamWriteShared" => fn stream_write_shared(core, env; id: u32, chunk: Uint8ArraySlice<'_>) -> bool {
        core.stream_write_shared(env, id, chunk)
    }
    /// `wsUpgrade(id, protocol, maxPayload, idleTimeoutMs, compress)`: see `Core::ws_upgrade`.
    c"wsUpgrade" => fn ws_upgrade(
        core, _env; id: u32, protocol: Option<String>, max_payload: f64, idle_timeout_ms: f64, compress: u32
    ) -> u32 {
        core.ws_upgrade(id, protocol, max_payload, idle_timeout_ms, compress)
    }
    /// `wsAccept(id, sid, release, headers?)`: see `Core::ws_accept`.
    c"wsAccept" => fn ws_accept(core, _env; id: u32, sid: u32, release: bool, headers: Trailing<Vec<String>>) -> () {
        core.ws_accept(id, sid, release, headers.0)
    }
    /// `wsAbandon(sid)`: see `Core::ws_abandon`.
    c"wsAbandon" => fn ws_abandon(core, _env; sid: u32) -> () {
        core.ws_abandon(sid);
        Ok(())
    }
    /// `wsSendText(sid, text, compress?)`: see `Core::ws_send`.
    c"wsSendText" => fn ws_send_text(core, _env; sid: u32, text: JsText, compress: Trailing<bool>) -> i32 {
        let compress = compress.0.unwrap_or(true);
        Ok(text.read(|t| match t {
            TextBytes::Small(b) => core.ws_send(sid, b, bytes::Bytes::copy_from_slice, true, compress),
            TextBytes::Long(b) => core.ws_send(sid, b, |b| b, true, compress),
        })?)
    }
    /// `wsSendBytes(sid, data, compress?)`: the data is copied (`Core::ws_send`).
    c"wsSendBytes" => fn ws_send_bytes(core, _env; sid: u32, data: ViewBytes<'_>, compress: Trailing<bool>) -> i32 {
        Ok(core.ws_send(sid, data.0, bytes::Bytes::copy_from_slice, false, compress.0.unwrap_or(true)))
    }
    /// `wsStage(area)`: registers the staging area of `wsSendStaged` (`Core::ws_stage`).
    c"wsStage" => fn ws_stage(core, _env; area: ViewBytes<'_>) -> () {
        core.ws_stage(area.0.as_ptr().cast_mut(), area.0.len());
        Ok(())
    }
    /// `wsSendStaged()`: `wsSendBytes` of the message in the staging area (`Core::ws_send_staged`).
    c"wsSendStaged" => fn ws_send_staged(core, _env) -> () {
        core.ws_send_staged();
        Ok(())
    }
    /// `wsHearDrain(sid)`: see `Core::ws_hear_drain`.
    c"wsHearDrain" => fn ws_hear_drain(core, _env; sid: u32) -> () {
        core.ws_hear_drain(sid);
        Ok(())
    }
    /// `wsOwnBuffers(sid, on)`: see `Core::ws_own_buffers`.
    c"wsOwnBuffers" => fn ws_own_buffers(core, _env; sid: u32, on: bool) -> () {
        core.ws_own_buffers(sid, on);
        Ok(())
    }
    /// `wsClose(sid, code, reason)`: queues a close frame.
    c"wsClose" => fn ws_close(core, _env; sid: u32, code: u32, reason: String) -> () {
        core.ws_close(sid, code, reason);
        Ok(())
    }
    /// `wsPing(sid, data)`: queues a ping; false when the socket is closing.
    c"wsPing" => fn ws_ping(core, _env; sid: u32, data: ViewBytes<'_>) -> bool {
        Ok(core.ws_ping(sid, data.0))
    }
    /// `wsBuffered(sid)`: bytes queued and not yet written.
    c"wsBuffered" => fn ws_buffered(core, _env; sid: u32) -> f64 {
        Ok(core.ws_buffered(sid))
    }
    /// `wsRemoteAddress(sid)`: the client's IP address.
    c"wsRemoteAddress" => fn ws_remote_address(core, _env; sid: u32) -> String {
        Ok(core.ws_remote_address(sid))
    }
    /// `wsSubscribe(sid, topic, on)`: (un)subscribes; true when that changed anything.
    c"wsSubscribe" => fn ws_subscribe(core, _env; sid: u32, topic: JsText, on: bool) -> bool {
        Ok(topic.read_str(|topic| core.ws_subscribe(sid, topic, on))?)
    }
    /// `wsIsSubscribed(sid, topic)`.
    c"wsIsSubscribed" => fn ws_is_subscribed(core, _env; sid: u32, topic: JsText) -> bool {
        Ok(topic.read_str(|topic| core.ws_is_subscribed(sid, topic))?)
    }
    /// `wsSubscriberCount(topic)`: how many sockets are subscribed to `topic`.
    c"wsSubscriberCount" => fn ws_subscriber_count(core, _env; topic: JsText) -> u32 {
        Ok(topic.read_str(|topic| core.ws_subscriber_count(topic))?)
    }
    /// `wsTopics(sid)`: the topics a socket is subscribed to.
    c"wsTopics" => fn ws_topics(core, _env; sid: u32) -> Vec<String> {
        Ok(core.ws_topics(sid))
    }
    /// `wsPublishText(except, topic, text, compress)`: see `Core::ws_publish`.
    c"wsPublishText" => fn ws_publish_text(core, _env; except: u32, topic: JsText, text: JsText, compress: bool) -> u32 {
        Ok(topic.read_str(|topic| {
            text.read(|t| match t {
                TextBytes::Small(b) => core.ws_publish(except, topic, bytes::Bytes::copy_from_slice(b), true, compress),
                TextBytes::Long(b) => core.ws_publish(except, topic, b, true, compress),
            })
        })??)
    }
    /// `wsPublishBytes(except, topic, data, compress)`: the data is copied once.
    c"wsPublishBytes" => fn ws_publish_bytes(core, _env; except: u32, topic: JsText, data: ViewBytes<'_>, compress: bool) -> u32 {
        Ok(topic.read_str(|topic| core.ws_publish(except, topic, bytes::Bytes::copy_from_slice(data.0), false, compress))?)
    }
    /// `streamEnd(id, failed)`: see `Core::stream_end`.
    c"streamEnd" => fn stream_end(core, _env; id: u32, failed: bool) -> () {
        core.stream_end(id, failed);
        Ok(())
    }
}

/// Adds `calls` and the `constants` object to the addon's exports, beside napi-rs's.
#[napi_derive::napi(module_exports)]
pub fn exports(mut exports: Object, env: Env) -> Result<()> {
    crate::diagnostics::init();
    let mut bind = ptr::null_mut();
    // SAFETY: plain Node-API calls on the thread loading the addon, with valid arguments.
    unsafe {
        check_status!(sys::napi_create_function(
            env.raw(),
            c"calls".as_ptr(),
            5,
            Some(bind_calls),
            ptr::null_mut(),
            &mut bind,
        ))?;
        check_status!(sys::napi_set_named_property(env.raw(), exports.raw(), c"calls".as_ptr(), bind))?;
    }
    exports.set("constants", crate::wire::to_js(&env)?)?;
    Ok(())
}

/// `calls(handle)`: an object of every call, each a function bound to the server `handle`
/// (its data pointer holds the handle). Binding checks nothing: a call on a server that is
/// gone throws `ERR_INVALID_STATE`.
unsafe extern "C" fn bind_calls(raw: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut argc = 1;
    let mut argv = [ptr::null_mut(); 1];
    // SAFETY: `raw` and `info` are this callback's own; `argv` has room for `argc` values.
    let made = unsafe {
        check_status!(sys::napi_get_cb_info(raw, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()))
            .and_then(|()| u32::from_napi_value(raw, argv[0]))
            .and_then(|handle| {
                let mut object = ptr::null_mut();
                check_status!(sys::napi_create_object(raw, &mut object))?;
                for (name, callback) in CALLS {
                    let mut function = ptr::null_mut();
                    check_status!(sys::napi_create_function(
                        raw,
                        name.as_ptr(),
                        name.count_bytes() as isize,
                        Some(*callback),
                        handle as usize as *mut std::ffi::c_void,
                        &mut function,
                    ))?;
                    check_status!(sys::napi_set_named_property(raw, object, name.as_ptr(), function))?;
                }
                Ok(object)
            })
    };
    match made {
        Ok(object) => object,
        Err(e) => {
            // SAFETY: `raw` is the callback's own.
            unsafe { JsError::from(e).throw_into(raw) };
            ptr::null_mut()
        }
    }
}

/// The body of a call: `f` gets the handle of the server its function was bound to and the
/// first `N` arguments, a missing one as a null `napi_value` (which every conversion but
/// `Trailing`'s refuses with `napi_invalid_arg`); its error, or a panic, is thrown into JS
/// with its `code`.
///
/// # Safety
/// `env` and `info` are those Node-API passed to the callback of a function made by
/// `bind_calls`.
unsafe fn call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    f: impl FnOnce(&Env, u32, &[sys::napi_value; N]) -> BridgeResult<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut data = ptr::null_mut();
    // SAFETY: `argv` has room for `argc` values.
    let read = unsafe {
        check_status!(sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data))
    };
    // Node-API fills the places of missing arguments with `undefined`; `Trailing` needs to
    // tell a missing one apart without asking V8 for its type.
    for missing in argv.iter_mut().skip(argc) {
        *missing = ptr::null_mut();
    }
    // `bind_calls` stored the handle, a u32, as the data pointer.
    let server = data as usize as u32;
    let wrapped = Env::from_raw(env);
    let result = read.map_err(Into::into).and_then(|()| {
        std::panic::catch_unwind(AssertUnwindSafe(|| f(&wrapped, server, &argv)))
            .unwrap_or_else(|panic| Err(napi::bindgen_prelude::panic_to_error(panic).into()))
    });
    match result {
        Ok(value) => value,
        Err(e) => {
            // SAFETY: `env` is the callback's own.
            unsafe { JsError::from(napi::Error::from(e)).throw_into(env) };
            ptr::null_mut()
        }
    }
}

/// A last argument that may be left out: `None` when the call was made without it. (A
/// `null` or `undefined` given explicitly is not "left out": it is converted as `T`.)
pub struct Trailing<T>(pub Option<T>);

impl<T: FromNapiValue> FromNapiValue for Trailing<T> {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        if value.is_null() {
            return Ok(Trailing(None));
        }
        // SAFETY: as the caller promises.
        Ok(Trailing(Some(unsafe { T::from_napi_value(env, value) }?)))
    }
}

/// What a call gives back to JS. `()` is no value at all: a callback's null result reads as
/// `undefined` in JS, without the `napi_get_undefined` call napi-rs makes for it.
trait Returned {
    /// # Safety
    /// `env` is the running callback's.
    unsafe fn into_js(self, env: sys::napi_env) -> Result<sys::napi_value>;
}

impl Returned for () {
    unsafe fn into_js(self, _env: sys::napi_env) -> Result<sys::napi_value> {
        Ok(ptr::null_mut())
    }
}

macro_rules! returned_as_napi_rs_converts {
    ($($t:ty),*) => {$(
        impl Returned for $t {
            unsafe fn into_js(self, env: sys::napi_env) -> Result<sys::napi_value> {
                // SAFETY: as the caller promises.
                unsafe { ToNapiValue::to_napi_value(env, self) }
            }
        }
    )*};
}

returned_as_napi_rs_converts!(
    u32,
    i32,
    bool,
    f64,
    String,
    Option<String>,
    Option<u32>,
    Vec<String>,
    Option<crate::tls::ClientCertificateInfo>,
    Option<BufferSlice<'_>>,
    Option<napi::JsString<'_>>,
    Either<BufferSlice<'_>, u32>
);

/// A JS string as UTF-8. A short one is encoded in one pass into a buffer on the stack and
/// copied out at its length, where napi-rs's `String` asks V8 for the encoded length first
/// and then encodes: two walks over the string, and two calls, per response.
pub struct Utf8(pub bytes::Bytes);

/// The stack buffer a string is encoded into first. A string whose encoding may not have
/// fit (4 bytes or fewer left unused) is read again by napi-rs's `String`, measured first.
const ONE_PASS_BYTES: usize = 12 * 1024;

impl FromNapiValue for Utf8 {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); ONE_PASS_BYTES];
        let mut written = 0;
        // SAFETY: V8 writes at most `ONE_PASS_BYTES - 1` bytes and a NUL into the buffer and
        // reports the bytes before the NUL; a value that is not a string fails with
        // napi_string_expected.
        check_status!(unsafe {
            sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), ONE_PASS_BYTES, &mut written)
        })?;
        // V8 writes whole characters only, each at most 4 bytes (a lone surrogate becomes
        // U+FFFD, 3): a string cut short left fewer than 5 of the buffer's bytes unused.
        if written + 4 < ONE_PASS_BYTES {
            // SAFETY: the first `written` bytes were written by V8 above.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), written) };
            return Ok(Utf8(bytes::Bytes::copy_from_slice(bytes)));
        }
        // SAFETY: as above.
        Ok(Utf8(unsafe { long_utf8(env, value) }?))
    }
}

/// The UTF-8 of a string too long for `Utf8`'s buffer on the stack, encoded by V8 into a
/// buffer of the heap: first one of a byte a UTF-16 unit (the length V8 has at hand), which
/// an ASCII string fits; a string cut short is encoded again into one of three bytes a unit,
/// which every string fits. napi-rs's `String` had V8 measure the encoding (a walk over the
/// string), zeroed a buffer of that length and had V8 encode into it: for a 64 KiB ASCII
/// response 270,000 instructions a request, 98,000 so (callgrind).
///
/// # Safety
/// `env` and `value` belong to the running callback.
unsafe fn long_utf8(env: sys::napi_env, value: sys::napi_value) -> Result<bytes::Bytes> {
    let mut units = 0;
    // SAFETY: with no buffer V8 reports the length in UTF-16 code units; a value that is not
    // a string fails with napi_string_expected.
    check_status!(unsafe { sys::napi_get_value_string_utf16(env, value, std::ptr::null_mut(), 0, &mut units) })?;
    let mut room = units + 5;
    loop {
        let mut out = Vec::<u8>::with_capacity(room);
        let mut written = 0;
        // SAFETY: V8 writes at most `room - 1` bytes and a NUL into the `room` reserved, and
        // reports the bytes before the NUL.
        check_status!(unsafe {
            sys::napi_get_value_string_utf8(env, value, out.as_mut_ptr().cast(), room, &mut written)
        })?;
        // Whole characters only, each at most 4 bytes: a string cut short left fewer than 5
        // bytes unused (as in `Utf8`). Three bytes a unit hold any string.
        if written + 4 < room || room > 3 * units {
            // SAFETY: the first `written` bytes were written by V8 above.
            unsafe { out.set_len(written) };
            if out.capacity() > 2 * written + 64 {
                // Mostly one-byte text with a few wider characters: not held at 3 bytes a unit
                // until the bytes are sent.
                out.shrink_to_fit();
            }
            return Ok(out.into());
        }
        room = 3 * units + 1;
    }
}

/// Room for a packed header list read at once (`HeaderList`'s conversion), its NUL included.
const PACKED_LIST_ROOM: usize = 256;

/// A response's header list (`response::HeaderList`): a string is lib/'s packed list, read
/// as Latin-1 (a one-byte string's characters copied as they are); an array, strings.
impl FromNapiValue for HeaderList {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        let mut kind = 0;
        // SAFETY: `value` is a live value of this callback's scope.
        check_status!(unsafe { sys::napi_typeof(env, value, &mut kind) })?;
        if kind != sys::ValueType::napi_string {
            // SAFETY: as the caller promises.
            return Ok(HeaderList::Strings(unsafe { Vec::<String>::from_napi_value(env, value) }?));
        }
        // Read at once into room for most lists (a few fields: about 60 bytes); asked for its
        // length first (a second call) only when it may not fit.
        let mut bytes = Vec::<u8>::with_capacity(PACKED_LIST_ROOM);
        let mut written = 0;
        // SAFETY: V8 writes at most `PACKED_LIST_ROOM - 1` characters and a NUL into its room.
        check_status!(unsafe {
            sys::napi_get_value_string_latin1(env, value, bytes.as_mut_ptr().cast(), PACKED_LIST_ROOM, &mut written)
        })?;
        if written < PACKED_LIST_ROOM - 1 {
            // SAFETY: the first `written` bytes were written by V8 above.
            unsafe { bytes.set_len(written) };
            return Ok(HeaderList::Packed(bytes));
        }
        let mut len = 0;
        // SAFETY: with no buffer, V8 only reports the length in characters (a byte each).
        check_status!(unsafe { sys::napi_get_value_string_latin1(env, value, ptr::null_mut(), 0, &mut len) })?;
        bytes.reserve(len + 1);
        // SAFETY: V8 writes at most `len` characters and a NUL into the `len + 1` bytes of room.
        check_status!(unsafe {
            sys::napi_get_value_string_latin1(env, value, bytes.as_mut_ptr().cast(), len + 1, &mut written)
        })?;
        // SAFETY: the first `written` (at most `len`) bytes were written by V8 above.
        unsafe { bytes.set_len(written.min(len)) };
        Ok(HeaderList::Packed(bytes))
    }
}

/// A JS string to be read as UTF-8 by `read`. A short one is read as UTF-16 and encoded
/// here, into a buffer on the stack: V8's UTF-8 writer (`napi_get_value_string_utf8`)
/// takes about 10 instructions a character, and napi-rs's `String` measures the string
/// with it first, about 1,000 instructions for a 64-character message (callgrind), where
/// the UTF-16 copy is a widening memcpy and an ASCII string is narrowed back in a loop the
/// compiler vectorizes. A lone surrogate becomes U+FFFD, as V8's writer makes it (WHATWG's
/// USVString). A longer string is read as `Utf8` reads it.
pub struct JsText {
    env: sys::napi_env,
    value: sys::napi_value,
}

/// UTF-16 code units read in one pass; each becomes at most 3 bytes of UTF-8.
const SMALL_TEXT_UNITS: usize = 256;

impl FromNapiValue for JsText {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        Ok(JsText { env, value })
    }
}

/// The UTF-8 of a `JsText`: a short string's on the stack (read in place, never moved),
/// a longer one's in its own buffer.
pub enum TextBytes<'a> {
    Small(&'a [u8]),
    Long(bytes::Bytes),
}

impl JsText {
    /// Calls `f` with the string's UTF-8.
    pub fn read<R>(self, f: impl FnOnce(TextBytes<'_>) -> R) -> Result<R> {
        let mut units = [std::mem::MaybeUninit::<u16>::uninit(); SMALL_TEXT_UNITS];
        let mut read = 0;
        // SAFETY: V8 writes at most `SMALL_TEXT_UNITS - 1` code units and a NUL and reports
        // the units before the NUL; a value that is not a string fails with
        // napi_string_expected. `env` and `value` belong to the running callback.
        check_status!(unsafe {
            sys::napi_get_value_string_utf16(
                self.env,
                self.value,
                units.as_mut_ptr().cast(),
                SMALL_TEXT_UNITS,
                &mut read,
            )
        })?;
        if read + 1 >= SMALL_TEXT_UNITS {
            // Maybe cut short: read it whole, as UTF-8. A string whose first units are
            // ASCII, too long for `Utf8`'s 12 KiB on the stack to hold at three bytes a unit,
            // is taken for ASCII throughout: encoded at once into a heap buffer of a byte a
            // unit (`long_utf8`), without the try on the stack first, which a string past
            // 12 KiB fills for nothing (a 16 KiB message's send encoded 28 KiB). Shorter ones
            // and other text keep that try: V8's writer takes its fast path into room of
            // three bytes a unit (at a byte a unit, a 3,000-byte message's encoding cost
            // 1,000 instructions more).
            // SAFETY: the first `read` units were written by V8 above.
            let head = unsafe { std::slice::from_raw_parts(units.as_ptr().cast::<u16>(), read) };
            let mut length = 0;
            // SAFETY: with no buffer V8 reports the length in UTF-16 code units.
            check_status!(unsafe {
                sys::napi_get_value_string_utf16(self.env, self.value, std::ptr::null_mut(), 0, &mut length)
            })?;
            // SAFETY: as above.
            let bytes = if 3 * length > ONE_PASS_BYTES && head.iter().fold(0, |a, &u| a | u) < 0x80 {
                unsafe { long_utf8(self.env, self.value) }?
            } else {
                unsafe { Utf8::from_napi_value(self.env, self.value) }?.0
            };
            return Ok(f(TextBytes::Long(bytes)));
        }
        // SAFETY: the first `read` units were written by V8 above.
        let units = unsafe { std::slice::from_raw_parts(units.as_ptr().cast::<u16>(), read) };
        let mut out = [std::mem::MaybeUninit::<u8>::uninit(); 3 * SMALL_TEXT_UNITS];
        let n = utf16_to_utf8(units, &mut out);
        // SAFETY: the first `n` bytes were written by `utf16_to_utf8`.
        Ok(f(TextBytes::Small(unsafe { std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), n) })))
    }

    /// Calls `f` with the string as a `&str` (a pub/sub topic): read as `read` reads it,
    /// where napi-rs's `String` had V8 measure it, then zeroed and filled a heap buffer.
    pub fn read_str<R>(self, f: impl FnOnce(&str) -> R) -> Result<R> {
        self.read(|t| {
            let bytes = match &t {
                TextBytes::Small(b) => b,
                TextBytes::Long(b) => &b[..],
            };
            // Both ways give whole characters of valid UTF-8 (a lone surrogate as U+FFFD),
            // so this check never fails; it costs a pass over a topic's few bytes.
            std::str::from_utf8(bytes).map(f).map_err(|e| napi::Error::from_reason(e.to_string()))
        })?
    }
}

/// Encodes `units` (UTF-16, a lone surrogate as U+FFFD) into `out`, which has room for 3
/// bytes a unit; returns the bytes written.
fn utf16_to_utf8(units: &[u16], out: &mut [std::mem::MaybeUninit<u8>]) -> usize {
    debug_assert!(out.len() >= 3 * units.len());
    if units.iter().fold(0, |a, &u| a | u) < 0x80 {
        for (o, &u) in out.iter_mut().zip(units) {
            o.write(u as u8);
        }
        return units.len();
    }
    let mut n = 0;
    for c in char::decode_utf16(units.iter().copied()) {
        let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
        let mut b = [0u8; 4];
        for &x in c.encode_utf8(&mut b).as_bytes() {
            out[n].write(x);
            n += 1;
        }
    }
    n
}

/// The bytes of a typed array (any ArrayBufferView), borrowed for the call. Read with
/// `napi_get_buffer_info`, which asks V8 for the view's buffer, offset and length only,
/// where napi-rs's `&[u8]` (`napi_get_typedarray_info`) also works out the array's type
/// with a test per kind of typed array: about 80 instructions less a message sent.
pub struct ViewBytes<'a>(pub &'a [u8]);

impl FromNapiValue for ViewBytes<'_> {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: a value that is not an ArrayBufferView fails with napi_invalid_arg.
        check_status!(unsafe { sys::napi_get_buffer_info(env, value, &mut data, &mut len) })?;
        if len == 0 || data.is_null() {
            return Ok(ViewBytes(&[]));
        }
        // SAFETY: the view's `len` bytes, which JS cannot touch while this call runs.
        Ok(ViewBytes(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }))
    }
}

/// The next argument, converted as napi-rs converts one.
///
/// # Safety
/// `env` and the values belong to the running callback.
unsafe fn arg<T: FromNapiValue>(
    env: sys::napi_env,
    argv: &mut impl Iterator<Item = sys::napi_value>,
) -> BridgeResult<T> {
    // `call` reads as many values as the callback declares, so one is always there.
    let value = argv.next().unwrap_or(ptr::null_mut());
    // SAFETY: as the caller promises.
    Ok(unsafe { T::from_napi_value(env, value) }?)
}

#[cfg(test)]
mod tests {
    use super::utf16_to_utf8;

    #[test]
    fn utf16_to_utf8_matches_the_lossy_conversion() {
        let cases: Vec<Vec<u16>> = vec![
            vec![],
            "hello".encode_utf16().collect(),
            "é漢\u{1F600}".encode_utf16().collect(),
            vec![0x61, 0xd800, 0x62],
            vec![0xdc00, 0xdc00],
            vec![0x61, 0xd83d],
            vec![0x7f; 255],
            vec![0x80; 255],
            vec![0xffff; 255],
        ];
        for units in cases {
            let mut out = vec![std::mem::MaybeUninit::<u8>::uninit(); 3 * units.len()];
            let n = utf16_to_utf8(&units, &mut out);
            // SAFETY: the first `n` bytes were written.
            let got = unsafe { std::slice::from_raw_parts(out.as_ptr().cast::<u8>(), n) };
            assert_eq!(got, String::from_utf16_lossy(&units).as_bytes(), "{units:x?}");
        }
    }
}
