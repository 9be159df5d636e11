//! Bytes crossing without a copy: large request bodies handed to JS as external buffers,
//! and JS typed arrays lent to hyper as response bodies until written.

use crate::bridge::{self, Doorbell, LentRef};
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use napi::bindgen_prelude::*;
use napi::Env;
use std::sync::Arc;

/// Bodies this large or larger cross to JS as external buffers instead of copies.
pub(crate) const EXTERNAL_BUFFER_MIN: usize = 64 * 1024;

/// A Buffer over `data`: copied when small, external (no copy) when large.
pub(crate) fn to_buffer(env: &Env, data: bytes::Bytes) -> BridgeResult<BufferSlice<'_>> {
    if data.len() < EXTERNAL_BUFFER_MIN {
        return Ok(BufferSlice::copy_from(env, &data)?);
    }
    let ptr = data.as_ptr() as *mut u8;
    let len = data.len();
    // SAFETY: the Bytes is moved into the finalizer hint, so the memory lives until
    // V8 frees the buffer; each collected body is its own allocation, so no two
    // externals share a data pointer.
    let buffer = unsafe { BufferSlice::from_external(env, ptr, len, data, |_, d| drop(d)) }?;
    let_v8_count_external_buffers(env);
    Ok(buffer)
}

/// V8 frees the memory of short-lived ArrayBuffers at a scavenge, and starts one early
/// once the young generation's buffers hold twice its semi-space size, but it checks that
/// only when it allocates a buffer's memory itself. External buffers skip the check: under
/// an echo of 100 KiB bodies they piled up until the external-memory limit forced a full
/// mark-compact every ~70 ms (and peak RSS rose with them). A one-byte buffer after each
/// external one runs V8's check, so they go at the next scavenge, as Node's own do.
fn let_v8_count_external_buffers(env: &Env) {
    let mut data = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // SAFETY: a plain napi call on the JS thread; the result is garbage at once. A failure
    // (out of memory) only skips the check.
    unsafe { napi::sys::napi_create_arraybuffer(env.raw(), 1, &mut data, &mut value) };
}

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
pub(crate) fn lend(env: &Env, doorbell: &Arc<Doorbell>, array: Uint8ArraySlice<'_>) -> BridgeResult<bytes::Bytes> {
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
