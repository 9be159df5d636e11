//! The hottest calls of the napi surface as plain Node-API callbacks: `drain` and `flush`
//! (once per batch of requests), the replies with a whole body (`respondText`, `respondBytes`,
//! `respondEmpty`) and `bodyCollect` (once per request that has them).
//!
//! napi-rs's generated wrapper around a function costs 130-240 ns a call (measured against
//! 55-60 ns for a plain callback: a probe addon, 5M calls of each, pinned to one core): a
//! type check per argument, a borrow scope and barrier kept in thread-local storage. Here
//! the arguments come from one `napi_get_cb_info` and plain conversions. Errors are thrown
//! as napi-rs throws them (the same messages, so `nativeError` in lib/native.ts maps codes
//! the same way), and a panic becomes a thrown error, as with `catch_unwind` elsewhere.

use crate::registry::with_core;
use napi::bindgen_prelude::{BufferSlice, FromNapiValue, JsValue, Object, ToNapiValue, Uint32ArraySlice};
use napi::{check_status, sys, Env, JsError, Result};
use std::panic::AssertUnwindSafe;
use std::ptr;

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// Adds the callbacks of this module to the addon's exports, beside napi-rs's.
#[napi_derive::napi(module_exports)]
pub fn exports(exports: Object, env: Env) -> Result<()> {
    let callbacks: [(&std::ffi::CStr, Callback); 6] = [
        (c"drain", drain),
        (c"flush", flush),
        (c"respondText", respond_text),
        (c"respondBytes", respond_bytes),
        (c"respondEmpty", respond_empty),
        (c"bodyCollect", body_collect),
    ];
    for (name, callback) in callbacks {
        let mut function = ptr::null_mut();
        // SAFETY: plain Node-API calls on the thread loading the addon, with valid arguments.
        unsafe {
            check_status!(sys::napi_create_function(
                env.raw(),
                name.as_ptr(),
                name.count_bytes() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            ))?;
            check_status!(sys::napi_set_named_property(env.raw(), exports.raw(), name.as_ptr(), function))?;
        }
    }
    let mut exports = exports;
    exports.set("constants", crate::wire::to_js(&env)?)?;
    Ok(())
}

/// The body of a callback: `f` gets the first `N` arguments (`undefined` where missing);
/// its error, or a panic, is thrown into JS.
///
/// # Safety
/// `env` and `info` are those Node-API passed to the callback.
unsafe fn call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    f: impl FnOnce(&Env, &[sys::napi_value; N]) -> Result<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    // SAFETY: `argv` has room for `argc` values.
    let read = unsafe {
        check_status!(sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), ptr::null_mut()))
    };
    let wrapped = Env::from_raw(env);
    let result = read.and_then(|()| {
        std::panic::catch_unwind(AssertUnwindSafe(|| f(&wrapped, &argv)))
            .unwrap_or_else(|panic| Err(napi::bindgen_prelude::panic_to_error(panic)))
    });
    match result {
        Ok(value) => value,
        Err(e) => {
            // SAFETY: `env` is the callback's own.
            unsafe { JsError::from(e).throw_into(env) };
            ptr::null_mut()
        }
    }
}

/// A number argument as a u32 (as napi-rs converts one).
///
/// # Safety
/// `env` and `value` belong to the running callback.
unsafe fn u32_arg(env: sys::napi_env, value: sys::napi_value) -> Result<u32> {
    let mut out = 0;
    // SAFETY: as the caller promises.
    unsafe { check_status!(sys::napi_get_value_uint32(env, value, &mut out), "expected a number")? };
    Ok(out)
}

/// # Safety
/// `env` belongs to the running callback.
unsafe fn undefined(env: sys::napi_env) -> Result<sys::napi_value> {
    // SAFETY: as the caller promises.
    unsafe { <()>::to_napi_value(env, ()) }
}

/// `drain(server, records, texts)`: see `Core::drain`.
unsafe extern "C" fn drain(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<3>(env, info, |e, a| {
            let server = u32_arg(env, a[0])?;
            let records = Uint32ArraySlice::from_napi_value(env, a[1])?;
            let mut texts = Object::from_napi_value(env, a[2])?;
            let n = with_core(server, |c| c.drain(e, records, &mut texts))?;
            u32::to_napi_value(env, n)
        })
    }
}

/// `flush(server)`: see `Core::flush`.
unsafe extern "C" fn flush(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<1>(env, info, |_, a| {
            let server = u32_arg(env, a[0])?;
            with_core(server, |c| {
                c.flush();
                Ok(())
            })?;
            undefined(env)
        })
    }
}

/// The arguments every `respond*` call starts with.
struct ReplyArgs {
    server: u32,
    id: u32,
    status: u32,
    ct: u32,
    headers: Option<Vec<String>>,
}

/// Reads `server, id, status, ct, headers` from the first five arguments.
///
/// # Safety
/// `env` and the values belong to the running callback.
unsafe fn reply_args(env: sys::napi_env, a: &[sys::napi_value]) -> Result<ReplyArgs> {
    // SAFETY: as the caller promises.
    unsafe {
        Ok(ReplyArgs {
            server: u32_arg(env, a[0])?,
            id: u32_arg(env, a[1])?,
            status: u32_arg(env, a[2])?,
            ct: u32_arg(env, a[3])?,
            headers: Option::<Vec<String>>::from_napi_value(env, a[4])?,
        })
    }
}

/// `respondText(server, id, status, ct, headers, body, release)`: see `Core::respond_text`.
unsafe extern "C" fn respond_text(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<7>(env, info, |_, a| {
            let r = reply_args(env, a)?;
            let body = String::from_napi_value(env, a[5])?;
            let release = bool::from_napi_value(env, a[6])?;
            with_core(r.server, |c| c.respond_text(r.id, r.status, r.ct, r.headers, body, release))?;
            undefined(env)
        })
    }
}

/// `respondBytes(server, id, status, ct, headers, body, release)`: see `Core::respond_bytes`.
unsafe extern "C" fn respond_bytes(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<7>(env, info, |_, a| {
            let r = reply_args(env, a)?;
            // Copied before this call returns (`Bytes::copy_from_slice`).
            let body = <&mut [u8]>::from_napi_value(env, a[5])?;
            let release = bool::from_napi_value(env, a[6])?;
            with_core(r.server, |c| c.respond_bytes(r.id, r.status, r.ct, r.headers, body, release))?;
            undefined(env)
        })
    }
}

/// `respondEmpty(server, id, status, ct, headers, release)`: see `Core::respond_empty`.
unsafe extern "C" fn respond_empty(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<6>(env, info, |_, a| {
            let r = reply_args(env, a)?;
            let release = bool::from_napi_value(env, a[5])?;
            with_core(r.server, |c| c.respond_empty(r.id, r.status, r.ct, r.headers, release))?;
            undefined(env)
        })
    }
}

/// `bodyCollect(server, id)`: see `Core::body_collect`.
unsafe extern "C" fn body_collect(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: the arguments are this callback's own.
    unsafe {
        call::<2>(env, info, |e, a| {
            let server = u32_arg(env, a[0])?;
            let id = u32_arg(env, a[1])?;
            let body = with_core(server, |c| c.body_collect(e, id))?;
            Option::<BufferSlice<'_>>::to_napi_value(env, body)
        })
    }
}
