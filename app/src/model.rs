//! The employee record and the rules every write must pass.

use std::collections::BTreeMap;

use serde::Serialize;

/// The only badges an employee may carry, in display order.
pub const BADGES: [&str; 6] = [
    "Mentor",
    "Leader",
    "Innovator",
    "Team Player",
    "Customer Hero",
    "Security Champion",
];

/// Longest accepted name, title or location, in characters.
pub const MAX_TEXT_CHARS: usize = 100;

/// Field name to a message for that field; sorted so output is stable.
pub type FieldErrors = BTreeMap<String, String>;

/// One employee as stored in the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Employee {
    pub id: String,
    pub full_name: String,
    pub job_title: String,
    pub location: String,
    pub badges: Vec<String>,
    /// S3 key of the thumbnail, if a photo was uploaded.
    pub photo_key: Option<String>,
}

/// A random version-4 UUID string; ids only need to be unique, not ordered.
pub fn new_id() -> String {
    let v = fastrand::u128(..);
    // Set the version (4) and variant (10xx) bits so the id is a well-formed UUID.
    let v = (v & !(0xf << 76)) | (0x4 << 76);
    let v = (v & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Whether `id` could have come from [`new_id`]-style ids or an admin's own;
/// guards the key size before any table call.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a required text field; returns the trimmed value.
pub fn check_text(field: &str, value: Option<&str>, errors: &mut FieldErrors) -> String {
    let v = value.unwrap_or("").trim();
    let n = v.chars().count();
    if n == 0 {
        errors.insert(field.to_owned(), "is required".to_owned());
    } else if n > MAX_TEXT_CHARS {
        errors.insert(
            field.to_owned(),
            format!("must be at most {MAX_TEXT_CHARS} characters (got {n})"),
        );
    } else if v.chars().any(char::is_control) {
        errors.insert(
            field.to_owned(),
            "must not contain control characters".to_owned(),
        );
    }
    v.to_owned()
}

/// Checks badges against [`BADGES`]; returns them in canonical order.
pub fn check_badges(badges: &[String], errors: &mut FieldErrors) -> Vec<String> {
    let mut seen = Vec::new();
    for b in badges {
        let b = b.trim();
        if !BADGES.contains(&b) {
            errors.insert(
                "badges".to_owned(),
                format!("unknown badge {b:?}; allowed: {}", BADGES.join(", ")),
            );
            return Vec::new();
        }
        if seen.contains(&b) {
            errors.insert("badges".to_owned(), format!("duplicate badge {b:?}"));
            return Vec::new();
        }
        seen.push(b);
    }
    BADGES
        .iter()
        .filter(|b| seen.contains(b))
        .map(|b| (*b).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(plausible_id(&a));
        assert_ne!(a, new_id());
        assert!(!plausible_id("../etc"));
        assert!(!plausible_id(""));
    }

    #[test]
    fn text_rules() {
        let mut e = FieldErrors::new();
        assert_eq!(check_text("a", Some("  Ada  "), &mut e), "Ada");
        check_text("b", None, &mut e);
        check_text("c", Some("   "), &mut e);
        check_text("d", Some(&"x".repeat(101)), &mut e);
        check_text("f", Some("a\u{7}b"), &mut e);
        assert_eq!(
            check_text("g", Some(&"é".repeat(100)), &mut e)
                .chars()
                .count(),
            100
        );
        assert!(!e.contains_key("a") && !e.contains_key("g"));
        assert_eq!(e["b"], "is required");
        assert_eq!(e["c"], "is required");
        assert!(e["d"].contains("at most 100"));
        assert!(e["f"].contains("control"));
    }

    #[test]
    fn badge_rules() {
        let mut e = FieldErrors::new();
        let got = check_badges(&["Leader".into(), "Mentor".into()], &mut e);
        assert_eq!(got, ["Mentor", "Leader"]);
        assert!(e.is_empty());
        check_badges(&["Wizard".into()], &mut e);
        assert!(e["badges"].contains("unknown badge \"Wizard\""));
        let mut e = FieldErrors::new();
        check_badges(&["Mentor".into(), "Mentor".into()], &mut e);
        assert!(e["badges"].contains("duplicate"));
    }
}
