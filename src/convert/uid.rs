//! DICOM unique identifiers.

/// Our Implementation Class UID (file meta 0002,0012): a fixed `2.25` UID made once from a
/// random UUID, so it names this software without needing a registered root.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.307253280861046982581804002049634508593";

/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// A new UID of the form `2.25.<decimal of a random UUID>` (PS3.5 B.2): unique without a
/// registered root, and at most 44 characters.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_and_distinct() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for uid in [&a, &b, &IMPLEMENTATION_CLASS_UID.to_string()] {
            assert!(uid.len() <= 64);
            assert!(uid.chars().all(|c| c.is_ascii_digit() || c == '.'));
            // No component may have a leading zero (PS3.5 9.1).
            assert!(
                uid.split('.').all(|c| c == "0" || !c.starts_with('0')),
                "{uid}"
            );
        }
    }
}
