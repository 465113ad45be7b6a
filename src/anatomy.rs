//! Where on the body a photo was taken: the regions the page offers, their SNOMED CT codes
//! (DICOM CID 4031 / CID 4, and CID 4029's "skin of" codes), and the side (CID 244).

/// One body region the page offers.
#[derive(Debug, PartialEq, Eq)]
pub struct Region {
    /// The name the page and the API use (`bodySite`), stable across releases.
    pub key: &'static str,
    /// SNOMED CT concept of the region (CID 4031 or CID 4).
    pub code: &'static str,
    pub meaning: &'static str,
    /// The CID 4029 "skin of" concept, where there is one, for sites that code skin.
    pub skin: Option<(&'static str, &'static str)>,
    /// Body Part Examined (0018,0015), only where PS3.16 Annex L defines a term.
    pub body_part: Option<&'static str>,
    /// Has a left and a right: the page asks for the side.
    pub paired: bool,
}

const fn region(
    key: &'static str,
    code: &'static str,
    meaning: &'static str,
    skin: Option<(&'static str, &'static str)>,
    body_part: Option<&'static str>,
    paired: bool,
) -> Region {
    Region {
        key,
        code,
        meaning,
        skin,
        body_part,
        paired,
    }
}

/// The regions, head to toe, in the order the page lists them.
pub const REGIONS: [Region; 32] = [
    region(
        "head",
        "69536005",
        "Head",
        Some(("70762009", "Skin of head")),
        Some("HEAD"),
        false,
    ),
    region(
        "face",
        "89545001",
        "Face",
        Some(("73897004", "Skin of face")),
        Some("FACE"),
        false,
    ),
    region(
        "scalp",
        "41695006",
        "Scalp",
        Some(("43067004", "Skin of scalp")),
        Some("SCALP"),
        false,
    ),
    region(
        "ear",
        "117590005",
        "Ear",
        Some(("1902009", "Skin of ear")),
        Some("EAR"),
        true,
    ),
    region(
        "nose",
        "45206002",
        "Nose",
        Some(("113179006", "Skin of nose")),
        Some("NOSE"),
        false,
    ),
    region(
        "cheek",
        "60819002",
        "Cheek",
        Some(("36141000", "Skin of cheek")),
        Some("CHEEK"),
        true,
    ),
    region("eyelid", "80243003", "Eyelid", None, Some("EYELID"), true),
    region(
        "neck",
        "45048000",
        "Neck",
        Some(("43081002", "Skin of neck")),
        Some("NECK"),
        false,
    ),
    region("chest", "816094009", "Chest", None, Some("CHEST"), false),
    region("breast", "76752008", "Breast", None, Some("BREAST"), true),
    region(
        "abdomen",
        "818981001",
        "Abdomen",
        Some(("75093004", "Skin of abdomen")),
        Some("ABDOMEN"),
        false,
    ),
    region(
        "back",
        "77568009",
        "Back",
        Some(("66643007", "Skin of back")),
        Some("BACK"),
        false,
    ),
    region("pelvis", "816092008", "Pelvis", None, Some("PELVIS"), false),
    region(
        "buttock",
        "46862004",
        "Buttock",
        Some(("22180002", "Skin of buttock")),
        Some("BUTTOCK"),
        true,
    ),
    region(
        "perineum",
        "38864007",
        "Perineum",
        Some(("48014002", "Skin of perineum")),
        None,
        false,
    ),
    region(
        "axilla",
        "91470000",
        "Axilla",
        Some(("76261009", "Skin of axilla")),
        Some("AXILLA"),
        true,
    ),
    region(
        "groin",
        "26893007",
        "Inguinal region",
        Some(("39687006", "Skin of inguinal region")),
        None,
        true,
    ),
    region(
        "shoulder",
        "16982005",
        "Shoulder",
        None,
        Some("SHOULDER"),
        true,
    ),
    region("upperArm", "40983000", "Upper arm", None, Some("ARM"), true),
    region(
        "elbow",
        "16953009",
        "Elbow joint",
        None,
        Some("ELBOW"),
        true,
    ),
    region(
        "forearm", "14975008", "Forearm", None,
        // PS3.16 Annex L has no Body Part Examined term for the forearm (dciodvfy agrees).
        None, true,
    ),
    region(
        "wrist",
        "74670003",
        "Wrist joint",
        None,
        Some("WRIST"),
        true,
    ),
    region(
        "hand",
        "85562004",
        "Hand",
        Some(("33712006", "Skin of hand")),
        Some("HAND"),
        true,
    ),
    region(
        "finger",
        "7569003",
        "Finger",
        Some(("244169007", "Skin of digit of hand")),
        Some("FINGER"),
        true,
    ),
    region("thumb", "76505004", "Thumb", None, Some("THUMB"), true),
    region("hip", "29836001", "Hip", None, Some("HIP"), true),
    region("thigh", "68367000", "Thigh", None, Some("THIGH"), true),
    region("knee", "72696002", "Knee", None, Some("KNEE"), true),
    region("lowerLeg", "30021000", "Lower leg", None, Some("LEG"), true),
    region(
        "ankle",
        "70258002",
        "Ankle joint",
        None,
        Some("ANKLE"),
        true,
    ),
    region(
        "foot",
        "56459004",
        "Foot",
        Some(("60496002", "Skin of foot")),
        Some("FOOT"),
        true,
    ),
    region(
        "toe",
        "29707007",
        "Toe",
        Some(("52034004", "Skin of toe")),
        Some("TOE"),
        true,
    ),
];

/// The region a `bodySite` value names: its key (any case) or its SNOMED CT code value
/// (the region's or its "skin of" code), so a client may send either.
pub fn find(value: &str) -> Option<&'static Region> {
    let value = value.trim();
    REGIONS.iter().find(|r| {
        r.key.eq_ignore_ascii_case(value)
            || r.code == value
            || r.skin.is_some_and(|(code, _)| code == value)
    })
}

/// A side that is not left, right or both.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be L, R, B or empty")]
pub struct UnknownSide;

/// The side of a paired region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
    Both,
}

impl Side {
    /// `L`, `R` or `B` (any case), or the words; empty (or `U`) is no side.
    pub fn parse(value: &str) -> Result<Option<Side>, UnknownSide> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "u" => Ok(None),
            "l" | "left" => Ok(Some(Side::Left)),
            "r" | "right" => Ok(Some(Side::Right)),
            "b" | "both" | "bilateral" => Ok(Some(Side::Both)),
            _ => Err(UnknownSide),
        }
    }

    /// Image Laterality (0020,0062).
    pub fn image_laterality(side: Option<Side>) -> &'static str {
        match side {
            Some(Side::Left) => "L",
            Some(Side::Right) => "R",
            Some(Side::Both) => "B",
            None => "U",
        }
    }

    /// The CID 244 modifier: code value and meaning.
    pub fn modifier(self) -> (&'static str, &'static str) {
        match self {
            Side::Left => ("7771000", "Left"),
            Side::Right => ("24028007", "Right"),
            Side::Both => ("51440002", "Bilateral"),
        }
    }
}

/// Which SNOMED CT concept the object carries for a region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Coding {
    /// The region itself (CID 4031 / CID 4), e.g. Forearm.
    #[default]
    Region,
    /// The region's skin (CID 4029), e.g. Skin of hand, where DICOM lists one; otherwise
    /// the region.
    Skin,
}

impl Coding {
    pub fn parse(value: &str) -> Option<Coding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "region" => Some(Coding::Region),
            "skin" => Some(Coding::Skin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Region => "region",
            Coding::Skin => "skin",
        }
    }
}

/// Where one photo was taken, as the page or the API gave it. A note may come without a
/// region; a side only with a paired region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub region: Option<&'static Region>,
    pub side: Option<Side>,
    /// Free text (Image Comments); may describe the patient, so it is never logged.
    pub note: String,
}

impl Site {
    /// The coded concept the object carries for the region: code value and meaning.
    pub fn concept(&self, coding: Coding) -> Option<(&'static str, &'static str)> {
        let region = self.region?;
        Some(match (coding, region.skin) {
            (Coding::Skin, Some(skin)) => skin,
            _ => (region.code, region.meaning),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_codes_are_unique_and_found_both_ways() {
        let mut seen = std::collections::HashSet::new();
        for r in &REGIONS {
            assert!(seen.insert(r.key), "{}", r.key);
            assert!(seen.insert(r.code), "{}", r.code);
            assert!(r.code.bytes().all(|b| b.is_ascii_digit()) && r.code.len() <= 16);
            assert_eq!(find(r.key), Some(r));
            assert_eq!(find(&r.key.to_uppercase()), Some(r));
            assert_eq!(find(r.code), Some(r));
            if let Some((skin, _)) = r.skin {
                assert_eq!(find(skin), Some(r));
            }
        }
        assert_eq!(find("spleen"), None);
        assert_eq!(find(""), None);
    }

    #[test]
    fn sides_parse_and_map_to_cid_244() {
        assert_eq!(Side::parse("L"), Ok(Some(Side::Left)));
        assert_eq!(Side::parse(" right "), Ok(Some(Side::Right)));
        assert_eq!(Side::parse("b"), Ok(Some(Side::Both)));
        assert_eq!(Side::parse(""), Ok(None));
        assert_eq!(Side::parse("U"), Ok(None));
        assert!(Side::parse("X").is_err());
        assert_eq!(Side::image_laterality(None), "U");
        assert_eq!(Side::Both.modifier().0, "51440002");
    }

    #[test]
    fn skin_coding_falls_back_to_the_region() {
        let hand = Site {
            region: find("hand"),
            side: Some(Side::Left),
            note: String::new(),
        };
        assert_eq!(
            hand.concept(Coding::Skin),
            Some(("33712006", "Skin of hand"))
        );
        assert_eq!(hand.concept(Coding::Region), Some(("85562004", "Hand")));
        let knee = Site {
            region: find("knee"),
            side: None,
            note: String::new(),
        };
        assert_eq!(knee.concept(Coding::Skin), Some(("72696002", "Knee")));
        let note_only = Site {
            region: None,
            side: None,
            note: "after debridement".into(),
        };
        assert_eq!(note_only.concept(Coding::Region), None);
    }
}
