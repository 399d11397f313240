//! The machinery every exported function uses: the panic boundary, argument checks, the registry
//! of live objects, out-parameters, the runtime behind each object, and the clearing of events.
//!
//! Every exported body runs inside [`ffi_body!`]: a Rust panic becomes `DROVER_RESULT_PANIC` and a
//! message, never an unwind into C. Arguments are checked by macro ([`try_str!`], [`try_out!`],
//! [`try_obj!`]) so each error names the parameter as the header spells it.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{drover_result, Failure};

/// Runs the body of an exported function behind the panic boundary and turns its
/// `Result<(), Failure>` into a `drover_result`, recording the message as the thread's last error.
macro_rules! ffi_body {
    ($body:block) => {{
        $crate::error::clear_last_error();
        let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::error::Failure> { $body },
        ));
        match result {
            Ok(Ok(())) => $crate::error::drover_result::Ok,
            Ok(Err(failure)) => failure.report(),
            Err(payload) => $crate::error::panic_failure(payload).report(),
        }
    }};
}

/// `&str` from a `const char *` parameter; NULL and invalid UTF-8 are errors naming the parameter.
macro_rules! try_str {
    ($p:ident) => {
        // SAFETY: every `const char *` parameter is documented as NULL or a NUL-terminated string
        // valid for the duration of the call; NULL is checked inside.
        unsafe { $crate::ffi::c_str($p, stringify!($p)) }?
    };
}

/// A checked out-parameter: NULL is an error naming the parameter; written only on success.
macro_rules! try_out {
    ($p:ident) => {
        $crate::ffi::Out::new($p, stringify!($p))?
    };
}

/// The live object behind an opaque pointer parameter, from its registry.
macro_rules! try_obj {
    ($registry:expr, $p:ident) => {
        $registry.get($p, stringify!($p))?
    };
}

pub(crate) use {ffi_body, try_obj, try_out, try_str};

/// Reads a C string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(drover_result::NullArgument, format!("`{name}` is NULL")));
    }
    // SAFETY: non-NULL, and NUL-terminated and live per this function's contract.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map_err(|e| {
        Failure::new(
            drover_result::InvalidUtf8,
            format!(
                "`{name}` is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// A non-NULL out-parameter, written at most once, on success.
pub(crate) struct Out<T> {
    ptr: *mut T,
}

impl<T> Out<T> {
    pub(crate) fn new(ptr: *mut T, name: &str) -> Result<Out<T>, Failure> {
        if ptr.is_null() {
            Err(Failure::new(drover_result::NullArgument, format!("`{name}` is NULL")))
        } else {
            Ok(Out { ptr })
        }
    }

    /// Writes the value without reading (or dropping) what was there.
    pub(crate) fn write(self, value: T) {
        // SAFETY: non-NULL (checked in `new`); every out-parameter is documented as pointing to
        // writable memory of its type. `write` does not read the old contents.
        unsafe { self.ptr.write(value) }
    }
}

/// A struct drover fills in for C that starts with a `size_t size` field, which the caller sets to
/// `sizeof` the struct as its header declares it. That is what lets the struct grow: drover writes
/// only the `size` bytes the caller has (a program built against an older header does not get the
/// newer fields written past its struct), and a program built against a newer header sees the
/// fields an older library does not know left as it initialised them (zero).
///
/// # Safety
/// The implementing type is `#[repr(C)]`, its first field is `size: usize`, all-zero bytes are a
/// valid value of it, and it has no drop glue.
pub(crate) unsafe trait SizedStruct: Sized {
    /// The C type's name, for error messages.
    const C_NAME: &'static str;
    /// The size of the struct's first version: a smaller `size` is refused (fields this version
    /// of drover must write would not fit).
    const MIN_SIZE: usize;
}

/// A non-NULL out-parameter of a [`SizedStruct`] whose `size` the caller set.
pub(crate) struct SizedOut<T> {
    ptr: *mut T,
    size: usize,
}

impl<T: SizedStruct> SizedOut<T> {
    /// Checks the pointer and the `size` the caller set in it.
    ///
    /// Per the header, a non-NULL pointer points to writable memory of at least `size` bytes, and
    /// `size` is at least `sizeof(size_t)`; a caller that forgot `size` left it 0 (or garbage).
    pub(crate) fn new(ptr: *mut T, name: &str) -> Result<SizedOut<T>, Failure> {
        if ptr.is_null() {
            return Err(Failure::new(drover_result::NullArgument, format!("`{name}` is NULL")));
        }
        // SAFETY: non-NULL, and every `SizedStruct` starts with a `usize` the caller initialised.
        let size = unsafe { ptr.cast::<usize>().read_unaligned() };
        if size < T::MIN_SIZE {
            return Err(Failure::new(
                drover_result::InvalidArgument,
                format!(
                    "`{name}->size` is {size}: set it to sizeof({c}) ({min} or more) before the call, \
                     e.g. `{c} x = {{ .size = sizeof({c}) }};`",
                    c = T::C_NAME,
                    min = T::MIN_SIZE
                ),
            ));
        }
        Ok(SizedOut { ptr, size })
    }

    /// Writes the first `size` bytes of `value` (those the caller's struct has), keeping the
    /// caller's `size`, without reading or dropping what was there.
    pub(crate) fn write(self, value: T) {
        let bytes = self.size.min(std::mem::size_of::<T>());
        let value = std::mem::ManuallyDrop::new(value);
        let source = std::ptr::from_ref::<T>(&value).cast::<u8>();
        // SAFETY: `ptr` points to at least `self.size` writable bytes (checked non-NULL in `new`,
        // sized by the caller per the header) and `value` has `size_of::<T>()` bytes; skipping the
        // leading `size` field keeps the caller's value. `T` has no drop glue to skip.
        unsafe {
            let skip = std::mem::size_of::<usize>();
            std::ptr::copy_nonoverlapping(source.add(skip), self.ptr.cast::<u8>().add(skip), bytes - skip);
        }
    }

    /// As [`SizedOut::write`], for a value owning the strings `strings` names: those past the
    /// caller's `size` (a program built with an older header) are freed instead of leaked.
    /// Whether the caller's struct (its `size`) has the field at `offset` of `len` bytes.
    pub(crate) fn has(&self, offset: usize, len: usize) -> bool {
        offset + len <= self.size
    }

    pub(crate) fn write_owning<const N: usize>(
        self,
        mut value: T,
        strings: impl FnOnce(&mut T) -> [&mut *mut c_char; N],
    ) {
        let base = std::ptr::from_ref::<T>(&value) as usize;
        let size = self.size;
        for field in strings(&mut value) {
            let offset = std::ptr::from_ref::<*mut c_char>(field) as usize - base;
            if offset + std::mem::size_of::<*mut c_char>() > size && !field.is_null() {
                // SAFETY: the value's owned strings come from `CString::into_raw`; nulled after.
                drop(unsafe { CString::from_raw(*field) });
                *field = std::ptr::null_mut();
            }
        }
        self.write(value);
    }
}

/// An array for the caller of `items` (made only once the size is checked and the array
/// allocated, so an error leaks none of the strings they may own), each entry `element_size` bytes (the caller's
/// `sizeof(T)`, so its indexing stays right when a later drover adds fields) with its `size` field
/// set to it: allocated with calloc (fields the library does not know read 0), freed with `free`.
/// NULL for no items. DROVER_RESULT_INVALID_ARGUMENT when `element_size` is below `T::MIN_SIZE`.
pub(crate) fn sized_array<T: SizedStruct>(
    items: impl ExactSizeIterator<Item = T>,
    element_size: usize,
    name: &str,
) -> Result<*mut T, Failure> {
    if element_size < T::MIN_SIZE {
        return Err(Failure::new(
            drover_result::InvalidArgument,
            format!(
                "`{name}` is {element_size}: pass sizeof({c}) ({min} or more)",
                c = T::C_NAME,
                min = T::MIN_SIZE
            ),
        ));
    }
    if items.len() == 0 {
        return Ok(std::ptr::null_mut());
    }
    let count = items.len();
    // SAFETY: calloc has no preconditions; its result is checked for NULL.
    let array = unsafe { libc::calloc(count, element_size) }.cast::<u8>();
    if array.is_null() {
        return Err(Failure::new(
            drover_result::Os,
            format!("cannot allocate {count} entries of {element_size} bytes"),
        ));
    }
    for (i, item) in items.take(count).enumerate() {
        // SAFETY: entry `i` is inside the `count * element_size` bytes just allocated.
        let entry = unsafe { array.add(i * element_size) }.cast::<T>();
        // SAFETY: the entry's leading `size` field is inside the allocation; each entry says its
        // size, as a caller-allocated struct does.
        unsafe { entry.cast::<usize>().write_unaligned(element_size) };
        SizedOut::new(entry, name)?.write(item);
    }
    Ok(array.cast::<T>())
}

/// The live objects of one opaque type `H`, each an `Arc<T>` keyed by its handle's address.
///
/// A handle is a heap allocation of `H` that is never read: its address is the key. Looking a
/// handle up instead of dereferencing it turns a freed or foreign pointer into
/// `DROVER_RESULT_INVALID_OBJECT` instead of a crash, and a call running on another thread keeps
/// its own `Arc` so a concurrent free cannot pull the object from under it.
pub(crate) struct Registry<H, T> {
    type_name: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
    _handle: PhantomData<fn() -> H>,
}

impl<H: Default, T> Registry<H, T> {
    pub(crate) const fn new(type_name: &'static str) -> Registry<H, T> {
        Registry {
            type_name,
            live: Mutex::new(BTreeMap::new()),
            _handle: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // The map is consistent whatever panicked while it was held.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `value` and returns its new handle.
    pub(crate) fn insert(&self, value: T) -> *mut H {
        let handle = Box::into_raw(Box::<H>::default());
        self.lock().insert(handle as usize, Arc::new(value));
        handle
    }

    /// The object behind `handle`.
    pub(crate) fn get(&self, handle: *const H, name: &str) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::new(drover_result::NullArgument, format!("`{name}` is NULL")));
        }
        self.lock().get(&(handle as usize)).cloned().ok_or_else(|| {
            Failure::new(
                drover_result::InvalidObject,
                format!(
                    "`{name}` ({handle:p}) is not a live {}: it was freed already, or it is another kind of object",
                    self.type_name
                ),
            )
        })
    }

    /// Unregisters `handle` and frees it; returns the object (dropped by the caller, possibly
    /// later than other calls still holding it). NULL is a no-op.
    pub(crate) fn remove(&self, handle: *mut H, name: &str) -> Result<Option<Arc<T>>, Failure> {
        if handle.is_null() {
            return Ok(None);
        }
        let value = self.lock().remove(&(handle as usize));
        match value {
            Some(value) => {
                // SAFETY: `handle` was registered by `insert`, which got it from `Box::into_raw`,
                // and it was just removed from the registry, so it is freed exactly once.
                drop(unsafe { Box::from_raw(handle) });
                Ok(Some(value))
            }
            None => Err(Failure::new(
                drover_result::InvalidObject,
                format!(
                    "`{name}` ({handle:p}) is not a live {}: it was freed already, or it is another kind of object",
                    self.type_name
                ),
            )),
        }
    }
}

/// A runtime of `threads` threads named `name` for one object handed to C (a master, a bus); a
/// runtime that cannot be created is DROVER_RESULT_OS.
pub(crate) fn new_runtime(name: &str, threads: usize) -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        // Inert unless a master config or the worker's environment enables busy polling.
        .on_thread_park(drover_core::busy_poll::park_hook())
        .build()
        .map_err(|e| {
            let what = if threads == 1 { "thread" } else { "threads" };
            Failure::new(drover_result::Os, format!("cannot create drover's runtime {what}: {e}"))
        })
}

/// Frees the strings an event handed to C owns, then zeroes the event but for its `size`; the body
/// of every exported `*_event_clear` function. NULL is a no-op. `fields` gives the addresses of
/// the event's string fields, computed from the event's address without reading it.
///
/// # Safety
/// `event` is NULL or points to a live `E` that is zeroed or was filled by drover and not cleared
/// since: each field `fields` names is NULL or a string from `CString::into_raw` owned by the
/// event. Its `size` is 0 (a zeroed event: nothing else is touched) or at least `E::MIN_SIZE`.
pub(crate) unsafe fn clear_event<E: SizedStruct, const N: usize>(
    event: *mut E,
    fields: impl FnOnce(*mut E) -> [*mut *mut c_char; N],
) {
    if event.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: per the contract, each field is NULL or an owned string from `CString::into_raw`,
        // freed once here; fields are accessed by raw pointer, never through a reference to the
        // whole event (whose enum may hold anything), and all-zero bytes are a valid `E`. Only the
        // bytes the caller's struct has are zeroed, past its `size` field.
        unsafe {
            let size = event.cast::<usize>().read_unaligned();
            if size < E::MIN_SIZE {
                // Zeroed (or never filled by drover): it owns nothing.
                return;
            }
            for field in fields(event) {
                // A field the caller's (older, smaller) struct does not have holds nothing.
                if field as usize - event as usize + std::mem::size_of::<*mut c_char>() > size {
                    continue;
                }
                let s = field.read();
                if !s.is_null() {
                    drop(CString::from_raw(s));
                }
            }
            let skip = std::mem::size_of::<usize>();
            let bytes = size.min(std::mem::size_of::<E>());
            std::ptr::write_bytes(event.cast::<u8>().add(skip), 0, bytes - skip);
        }
    }));
}

/// The `void *user` a C program registers with a callback, handed back to it on every call.
///
/// drover never reads it; the header says on which thread each callback runs, and the program
/// makes what `user` points to safe to use there (that is what lets it cross threads here).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UserData(pub(crate) *mut std::ffi::c_void);

// SAFETY: an opaque pointer drover only passes back to the C code that registered it, whose
// documented contract is to make it usable from the callback's thread.
unsafe impl Send for UserData {}
// SAFETY: as above; drover never dereferences it.
unsafe impl Sync for UserData {}

/// Takes a string a C callback allocated with `malloc` (NULL: none): copied, then freed with
/// `free`. Invalid UTF-8 is replaced, never trusted.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string from `malloc` that nothing else frees.
pub(crate) unsafe fn take_malloced(s: *mut c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // SAFETY: from `malloc`, freed once, here.
    unsafe { libc::free(s.cast()) };
    Some(text)
}

/// Converts a millisecond timeout from C: negative waits forever.
pub(crate) fn timeout_from_ms(timeout_ms: i64) -> Option<std::time::Duration> {
    u64::try_from(timeout_ms).ok().map(std::time::Duration::from_millis)
}

/// An owned C string for the caller, freed with `drover_string_free`.
pub(crate) fn owned_c_string(s: &str) -> *mut c_char {
    crate::error::c_string_lossy(s).into_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error_ptr;

    fn last_error() -> String {
        // SAFETY: the last error is a valid C string owned by this thread's slot.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    fn panics() -> drover_result {
        ffi_body!({
            let v: Vec<u8> = Vec::new();
            let _ = v[std::hint::black_box(3)];
            Ok(())
        })
    }

    #[test]
    fn a_panic_becomes_a_result_and_a_message() {
        assert_eq!(panics(), drover_result::Panic);
        assert!(last_error().contains("drover panicked"), "{}", last_error());
        assert!(last_error().contains("index out of bounds"), "{}", last_error());
        let ok = ffi_body!({ Ok(()) });
        assert_eq!(ok, drover_result::Ok);
        assert_eq!(last_error(), "");
    }

    #[derive(Default)]
    struct Handle {
        _private: u8,
    }

    #[test]
    fn the_registry_reports_freed_and_foreign_handles() {
        let registry: Registry<Handle, u32> = Registry::new("thing");
        let h = registry.insert(7);
        assert_eq!(*registry.get(h, "h").unwrap(), 7);
        let held = registry.get(h, "h").unwrap();
        assert!(registry.remove(h, "h").unwrap().is_some());
        assert_eq!(*held, 7, "a call in flight keeps its object");
        let err = registry.get(h, "h").unwrap_err();
        assert_eq!(err.code, drover_result::InvalidObject);
        assert!(err.message.contains("freed already"));
        assert_eq!(registry.remove(h, "h").unwrap_err().code, drover_result::InvalidObject);
        assert!(registry.remove(std::ptr::null_mut(), "h").unwrap().is_none());
        assert_eq!(
            registry.get(std::ptr::null(), "h").unwrap_err().code,
            drover_result::NullArgument
        );
    }
}
