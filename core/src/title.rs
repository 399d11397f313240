//! Process titles: how drover's processes show in `ps` and `top` (`drover: master web`,
//! `drover: web #2`).
//!
//! Linux shows two names for a process: its *comm* (`/proc/PID/comm`, `ps -o comm`, `top`; at most
//! 15 bytes, set with `PR_SET_NAME` or by writing `/proc/self/comm`) and its *command line*
//! (`/proc/PID/cmdline`, `ps -f`), read from the memory that held its `argv`. A process can
//! rewrite its own command line in place, never longer than the original arguments were, and
//! nobody else's. So:
//!
//! - the `drover` command titles itself ([`set_own_title`]: comm and command line);
//! - a Node worker takes the title its welcome carries as `process.title` (Node rewrites both);
//! - a Rust or C worker on drover's MessageBus sets its comm ([`set_comm`]): its command line is
//!   its own program's and stays so;
//! - a program on no drover library (`ready: spawn`, notify) keeps both names: an exec'd
//!   program cannot be renamed from outside (its `argv[0]` is what its launcher gave).
//!
//! Workers are titled only when their master's config asks ([`crate::MasterConfig::process_title`]).
//!
//! ```
//! assert_eq!(drover::title::worker_title("web", 2), "drover: web #2");
//! assert_eq!(drover::title::comm_of("drover: master web"), "drover: master");
//! ```

/// The most bytes of a comm (the kernel's `TASK_COMM_LEN` less its NUL).
pub const MAX_COMM_BYTES: usize = 15;

/// A worker's title: `drover: GROUP #INSTANCE`.
pub fn worker_title(group: &str, instance: u32) -> String {
    format!("drover: {group} #{instance}")
}

/// A master's title: `drover: master GROUP[,GROUP...]`.
pub fn master_title<'a>(groups: impl IntoIterator<Item = &'a str>) -> String {
    let groups: Vec<&str> = groups.into_iter().collect();
    format!("drover: master {}", groups.join(","))
}

/// `title` cut to a comm: at most [`MAX_COMM_BYTES`], at a character boundary, without trailing
/// spaces.
pub fn comm_of(title: &str) -> &str {
    let mut end = title.len().min(MAX_COMM_BYTES);
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    title[..end].trim_end()
}

/// Sets this process's comm (its main thread's name, which `ps` and `top` show) to `title`, cut
/// to [`MAX_COMM_BYTES`].
pub fn set_comm(title: &str) -> std::io::Result<()> {
    // /proc/self/comm is the thread-group leader's, whichever thread writes it (PR_SET_NAME would
    // name the calling thread only).
    std::fs::write("/proc/self/comm", comm_of(title))
}

/// Sets this process's comm and rewrites its command line to `title` (cut to the length of the
/// original arguments), as `setproctitle(3)` does: what `ps -f` shows from then on.
///
/// For a program's own `main`, early, before it starts threads: the memory rewritten is the one
/// `std::env::args()` reads, which then gives the title instead of the arguments (read them
/// before).
pub fn set_own_title(title: &str) -> std::io::Result<()> {
    set_comm(title)?;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the parenthesised comm (which may hold spaces), from field 3 (state) on:
    // arg_start and arg_end are fields 48 and 49.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/self/stat has no comm"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> std::io::Result<usize> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/self/stat is too short"))
    };
    let (start, end) = (field(48)?, field(49)?);
    if end <= start + 1 {
        return Ok(());
    }
    let room = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(room - 1);
    // SAFETY: [arg_start, arg_end) is this process's argument strings, written by the kernel at
    // exec in its own stack mapping (writable, alive for the process's life). Only the bytes
    // change, never the argv pointers; the last byte stays NUL, so every string stays terminated.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, room);
        area[..n].copy_from_slice(&bytes[..n]);
        area[n..].fill(0);
    }
    Ok(())
}
