//! Identifiers the gateway makes: request and health-probe ids, and the message or completion
//! ids of translated answers when the upstream sent none.
//!
//! They name things; they guard nothing (keys and webhook secrets come from the OS's random
//! source elsewhere), so they come from `fastrand`'s per-thread generator, seeded once, instead
//! of a `getrandom` system call on every request.

/// `prefix` followed by 32 random lowercase hex digits (128 bits), e.g. `req_3f9c…`.
pub fn random_id(prefix: &str) -> String {
    let hex = hex_digits();
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    s.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    s
}

/// [`random_id`] as a shared string, made in one allocation (a request's id, cloned along the
/// request by reference count).
pub fn random_shared_id(prefix: &str) -> std::sync::Arc<str> {
    let mut buf = [0u8; 64];
    match buf.get_mut(..prefix.len() + 32) {
        Some(id) => {
            let (head, digits) = id.split_at_mut(prefix.len());
            head.copy_from_slice(prefix.as_bytes());
            digits.copy_from_slice(&hex_digits());
            std::str::from_utf8(id).unwrap_or_default().into()
        }
        None => random_id(prefix).into(),
    }
}

/// 32 random lowercase hex digits: 16 bytes always fit, no `format!` machinery on every request.
fn hex_digits() -> [u8; 32] {
    let mut hex = [0u8; 32];
    let _ = hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut hex);
    hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape_and_uniqueness() {
        let a = super::random_id("req_");
        let b = super::random_id("req_");
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("req_"));
        assert!(
            a[4..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn a_shared_id_has_the_same_shape() {
        for prefix in ["req_", "", &"p".repeat(32), &"long".repeat(10)] {
            let a = super::random_shared_id(prefix);
            assert_eq!(a.len(), prefix.len() + 32);
            assert!(a.starts_with(prefix));
            assert!(
                a[prefix.len()..]
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert_ne!(a, super::random_shared_id(prefix));
        }
    }
}
