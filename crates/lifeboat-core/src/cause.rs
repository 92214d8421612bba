//! Looking under an error for the typed cause that decides what to tell the person.

/// The first error of type `T` in `e`'s source chain (not `e` itself).
pub fn find_cause<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<T>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// The kind of the first I/O error under `e` (a full disk, a refused connection).
pub fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    find_cause::<std::io::Error>(e).map(std::io::Error::kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_io_error_under_another_is_found_by_its_kind() {
        let e = Outer(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::StorageFull));
        let plain = std::fmt::Error;
        assert_eq!(io_kind(&plain), None);
    }
}
