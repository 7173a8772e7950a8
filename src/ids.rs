//! Identifiers the gateway makes: request and health-probe ids, and the message or completion
//! ids of translated answers when the upstream sent none.
//!
//! They name things; they guard nothing (keys and webhook secrets come from the OS's random
//! source elsewhere), so they come from `fastrand`'s per-thread generator, seeded once, instead
//! of a `getrandom` system call on every request.

/// `prefix` followed by 32 random lowercase hex digits (128 bits), e.g. `req_3f9c…`.
pub fn random_id(prefix: &str) -> String {
    let mut hex = [0u8; 32];
    // 16 bytes always fit 32 digits; no `format!` machinery on every request.
    let _ = hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut hex);
    let mut s = String::with_capacity(prefix.len() + 32);
    s.push_str(prefix);
    s.push_str(std::str::from_utf8(&hex).unwrap_or_default());
    s
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
}
