//! Shared by the log tests (`#[path = "support/retry.rs"] mod retry;`).

/// Retries `open` while sled finds its file lock on `<dir>/db` taken. sled 0.34
/// can hold that flock for a moment after the last handle is dropped (its I/O
/// threads; spacejam/sled#1234), and a process that a parallel test forks at
/// that instant holds an inherited descriptor until it execs. At most 10 s.
pub fn retry_while_locked<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            result => return result,
        }
    }
}
