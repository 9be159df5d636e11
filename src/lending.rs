//! Bytes crossing without a copy: large request bodies of declared length read straight
//! into JS-owned buffers, and JS typed arrays lent to hyper as response bodies until
//! written.

use crate::bridge::{self, Doorbell, LentRef};
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use napi::bindgen_prelude::*;
use napi::Env;
use std::sync::Arc;

/// A JS typed array lent to hyper as a response body: its bytes, and a reference that
/// keeps it alive until hyper has written them. Dropped on any thread: the reference goes
/// back through the doorbell queue and is deleted at JS's next drain, so releasing costs
/// JS no wake-up of its own (a napi-rs `Uint8Array` dropped off the JS thread would make
/// one per buffer).
struct LentBody {
    data: *const u8,
    len: usize,
    reference: Option<LentRef>,
    doorbell: Arc<Doorbell>,
}

// SAFETY: the bytes are not touched by JS while lent (README: a body must not change
// until sent) and stay alive while the reference is held; the reference is only moved.
unsafe impl Send for LentBody {}
unsafe impl Sync for LentBody {}

impl AsRef<[u8]> for LentBody {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see `lend`: the typed array's bytes, alive while `reference` is held.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for LentBody {
    fn drop(&mut self) {
        if let Some(r) = self.reference.take() {
            self.doorbell.push(bridge::Event::Release(r));
        }
    }
}

/// The bytes of `array` as a `Bytes` that holds the array alive instead of copying it.
///
/// The arrays lent before and written since are let go here first. Their releases otherwise
/// wait for the next drain, and a streamed response whose socket keeps up never gives the
/// event loop a turn (each chunk is taken at once, the next one a promise away): with the
/// network on its own thread a whole stream's chunks stayed alive until its end (512 MiB for
/// 512 MiB sent).
pub(crate) fn lend(env: &Env, doorbell: &Arc<Doorbell>, array: Uint8ArraySlice<'_>) -> BridgeResult<bytes::Bytes> {
    doorbell.take_releases(|r| {
        // SAFETY: each reference was made in this env on this thread (here or by
        // `JsBody::new`), and is deleted once (taken out of the queue, so no drain sees it).
        unsafe { napi::sys::napi_delete_reference(env.raw(), r.0) };
    });
    let mut reference = std::ptr::null_mut();
    // SAFETY: a live value of this callback, on the JS thread.
    let status = unsafe { napi::sys::napi_create_reference(env.raw(), array.value().value, 1, &mut reference) };
    if status != napi::sys::Status::napi_ok {
        return Err(BridgeError::new(ErrorKind::Napi(napi::Status::from(status)), "could not hold the response body"));
    }
    let bytes: &[u8] = array.as_ref();
    Ok(bytes::Bytes::from_owner(LentBody {
        data: bytes.as_ptr(),
        len: bytes.len(),
        reference: Some(LentRef(reference)),
        doorbell: doorbell.clone(),
    }))
}

/// A JS Buffer that a body reader fills off the JS thread: a request body of declared
/// length (up to `body::COLLECT_RESERVE_MAX`) is copied out of hyper's read buffer straight
/// into memory V8 owns, so it goes back to the system when V8 collects the Buffer, with no
/// finalizer to wait for.
///
/// External buffers (over Rust memory) are freed by a finalizer that Node runs on the JS
/// thread's next loop turn after V8 collects them: with the network on the JS thread
/// (`workerThreads: 0`) those turns came too rarely under 1 MiB uploads and hundreds of
/// MiB of collected bodies waited for them (RSS 0.9-2.4 GiB, the server 8x slower while
/// the allocator faulted fresh pages in). A Buffer V8 allocated is freed by V8 itself.
pub(crate) struct JsBody {
    data: *mut u8,
    len: usize,
    reference: Option<LentRef>,
    doorbell: Arc<Doorbell>,
}

// SAFETY: JS cannot reach the Buffer while it is being filled (it is handed over only
// once complete, by `into_buffer`), and the reference keeps its memory alive; a Buffer from
// `napi_create_buffer` always has its own backing store outside V8's heap, which the
// garbage collector never moves. The reference itself is only moved off the JS thread,
// never used there.
unsafe impl Send for JsBody {}

impl JsBody {
    /// A Buffer of `len` bytes, not initialized (each byte is written before JS sees it),
    /// held by a reference until handed to JS. On the JS thread.
    pub(crate) fn new(env: &Env, doorbell: &Arc<Doorbell>, len: usize) -> BridgeResult<JsBody> {
        let raw = env.raw();
        let mut value = std::ptr::null_mut();
        let mut data = std::ptr::null_mut();
        let mut reference = std::ptr::null_mut();
        // SAFETY: plain Node-API calls on the JS thread with its env. `napi_get_buffer_info`
        // gives the pointer to write through (napi-rs: the create call's own pointer is not
        // it on every target).
        unsafe {
            let status = napi::sys::napi_create_buffer(raw, len, &mut data, &mut value);
            if status != napi::sys::Status::napi_ok {
                return Err(BridgeError::new(ErrorKind::Napi(status.into()), "could not allocate the request body"));
            }
            let mut actual = 0usize;
            napi::sys::napi_get_buffer_info(raw, value, &mut data, &mut actual);
            if napi::sys::napi_create_reference(raw, value, 1, &mut reference) != napi::sys::Status::napi_ok {
                return Err(BridgeError::new(
                    ErrorKind::Napi(napi::Status::GenericFailure),
                    "could not hold the request body",
                ));
            }
        }
        Ok(JsBody { data: data.cast(), len, reference: Some(LentRef(reference)), doorbell: doorbell.clone() })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The Buffer's memory from `offset` on, for a read to fill (direct.rs); nothing past
    /// its end.
    pub(crate) fn spare_from(&mut self, offset: usize) -> &mut [std::mem::MaybeUninit<u8>] {
        let offset = offset.min(self.len);
        // SAFETY: in bounds of the Buffer's memory, which the reference keeps alive and
        // nothing else touches until `into_buffer`; seen as not initialized, so a read
        // only writes it.
        unsafe { std::slice::from_raw_parts_mut(self.data.add(offset).cast(), self.len - offset) }
    }

    /// Copies `bytes` in at `offset`; false (nothing written) when they do not fit.
    pub(crate) fn write_at(&mut self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds (checked above) of the Buffer's memory, which the reference
        // keeps alive and nothing else touches until `into_buffer`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(offset), bytes.len()) };
        true
    }

    /// The filled Buffer, for JS; the reference goes with it. On the JS thread.
    pub(crate) fn into_buffer<'e>(mut self, env: &'e Env) -> BridgeResult<BufferSlice<'e>> {
        let Some(r) = self.reference.take() else {
            return Err(BridgeError::new(ErrorKind::Napi(napi::Status::GenericFailure), "the request body is gone"));
        };
        let mut value = std::ptr::null_mut();
        // SAFETY: the reference was made in this env by `new` and is deleted once, here.
        unsafe {
            napi::sys::napi_get_reference_value(env.raw(), r.0, &mut value);
            napi::sys::napi_delete_reference(env.raw(), r.0);
            Ok(BufferSlice::from_napi_value(env.raw(), value)?)
        }
    }
}

impl Drop for JsBody {
    fn drop(&mut self) {
        // Not handed to JS (the request went away, or the body failed): the reference is
        // deleted at JS's next drain, as a lent response body's is.
        if let Some(r) = self.reference.take() {
            self.doorbell.push(bridge::Event::Release(r));
        }
    }
}

/// A body collected in pieces, copied into one Buffer that V8 allocates (see `JsBody` for
/// why not an external one). On the JS thread.
pub(crate) fn collected_buffer<'e>(env: &'e Env, body: &crate::body::Collected) -> BridgeResult<BufferSlice<'e>> {
    // One piece (a body that came with its head, most often): one Node-API call.
    if let Some(only) = body.only_piece() {
        return Ok(BufferSlice::copy_from(env, only)?);
    }
    let raw = env.raw();
    let mut value = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    // SAFETY: plain Node-API calls on the JS thread with its env; each piece is copied in
    // bounds of the new Buffer (the pieces add up to `body.len()`), before JS can see it.
    unsafe {
        let status = napi::sys::napi_create_buffer(raw, body.len(), &mut data, &mut value);
        if status != napi::sys::Status::napi_ok {
            return Err(BridgeError::new(ErrorKind::Napi(status.into()), "could not allocate the request body"));
        }
        let mut actual = 0usize;
        napi::sys::napi_get_buffer_info(raw, value, &mut data, &mut actual);
        let mut at = data.cast::<u8>();
        for part in body.parts() {
            std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
            at = at.add(part.len());
        }
        Ok(BufferSlice::from_napi_value(raw, value)?)
    }
}
