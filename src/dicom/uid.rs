//! DICOM unique identifiers: our own, the SOP classes we write, and new ones under a root.

/// Our Implementation Class UID (file meta 0002,0012): a fixed `2.25` UID made once from a
/// random UUID, so it names this software without needing a registered root.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.307253280861046982581804002049634508593";

/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// VL Photographic Image Storage.
pub const VL_PHOTOGRAPHIC: &str = "1.2.840.10008.5.1.4.1.1.77.1.4";

/// Modality Worklist Information Model – FIND (PS3.4 K.6.1).
pub const MODALITY_WORKLIST_FIND: &str = "1.2.840.10008.5.1.4.31";

/// Patient Root Query/Retrieve Information Model – FIND.
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";

/// Study Root Query/Retrieve Information Model – FIND.
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

/// A SOP class's name, for messages.
pub fn sop_class_name(uid: &str) -> &'static str {
    match uid.trim_end_matches(['\0', ' ']) {
        SECONDARY_CAPTURE => "Secondary Capture",
        VL_PHOTOGRAPHIC => "VL Photographic Image",
        "1.2.840.10008.1.1" => "Verification",
        MODALITY_WORKLIST_FIND => "Modality Worklist queries",
        PATIENT_ROOT_FIND => "Patient Root queries",
        STUDY_ROOT_FIND => "Study Root queries",
        _ => "this kind of object",
    }
}

/// A UID as PS3.5 9.1 writes one: 1 to 64 characters, digits in dot-separated components,
/// no component empty or with a leading zero.
pub fn is_valid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// The longest root we accept: what is left of the 64 characters still holds 23 random
/// digits (76 bits), plenty to never collide.
const MAX_ROOT_LEN: usize = 40;

/// Where new UIDs hang: a site's registered root (PHOTO_PACS_UID_ROOT), or by default the
/// `2.25` arc, under which a UUID in decimal is unique without registration (PS3.5 B.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidRoot(Option<String>);

impl UidRoot {
    pub fn parse(root: &str) -> Result<Self, String> {
        let root = root.trim().trim_end_matches('.');
        let components_ok = !root.is_empty()
            && root.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            });
        if !components_ok {
            return Err("must be digits separated by dots, without leading zeros, such as 1.2.826.0.1.3680043.10.999".into());
        }
        if root.len() > MAX_ROOT_LEN {
            return Err(format!(
                "must be at most {MAX_ROOT_LEN} characters so generated UIDs fit in 64"
            ));
        }
        Ok(UidRoot(Some(root.to_string())))
    }

    /// A new UID, at most 64 characters.
    pub fn new_uid(&self) -> String {
        let random = uuid::Uuid::new_v4().as_u128();
        match &self.0 {
            None => format!("2.25.{random}"),
            Some(root) => {
                let digits = (64 - root.len() - 1).min(38) as u32;
                format!("{root}.{}", random % 10_u128.pow(digits))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(uid: &str) -> bool {
        uid.len() <= 64
            && uid.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            })
    }

    #[test]
    fn default_uids_are_valid_and_distinct() {
        let root = UidRoot::default();
        let a = root.new_uid();
        assert!(a.starts_with("2.25."));
        assert_ne!(a, root.new_uid());
        assert!(valid(&a) && valid(IMPLEMENTATION_CLASS_UID), "{a}");
    }

    #[test]
    fn site_roots_are_checked_and_uids_stay_within_64() {
        for bad in ["", "1..2", "1.02", "a.b", "1.2.3-4", &"1".repeat(41)] {
            assert!(UidRoot::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "1.2.826.0.1.3680043.10.999",
            "1.0.2",
            &format!("1.{}", "9".repeat(38)),
        ] {
            let root = UidRoot::parse(good).unwrap();
            for _ in 0..200 {
                let uid = root.new_uid();
                assert!(uid.starts_with(good) && valid(&uid), "{uid}");
            }
        }
    }
}
