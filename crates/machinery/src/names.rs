//! Object name validation and `generateName` suffixes.
//!
//! Upstream counterparts: `k8s.io/apimachinery/pkg/util/validation`
//! (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsDNS1035Label`, the message
//! helpers), `pkg/api/validation/path` (`IsValidPathSegmentName`),
//! `pkg/api/validation` (`NameIsDNSSubdomain` and friends, with the
//! generateName prefix rule) and `apiserver/pkg/storage/names`
//! (`SimpleNameGenerator`). Validators return the list of problems as
//! upstream words them, empty when the value is fine; callers wrap them into
//! [`crate::FieldError`]s.

/// Longest DNS-1123 (and DNS-1035) label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";

/// The alphabet of generated suffixes: no vowels (no accidental words) and
/// no look-alike characters (0/o, 1/l).
pub const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of the random suffix appended to `generateName`.
pub const GENERATE_NAME_RANDOM_LENGTH: usize = 5;
const MAX_GENERATED_BASE_LENGTH: usize = DNS1123_LABEL_MAX_LENGTH - GENERATE_NAME_RANDOM_LENGTH;

/// Upstream `RegexError`: the message, examples, and the regex that
/// rejected the value. The double space before `or` is upstream's.
pub fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{regex}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(e);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(regex);
    out.push_str("')");
    out
}

/// Upstream `MaxLenError`.
pub fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream `EmptyError`.
pub fn empty_error() -> String {
    "must be non-empty".to_owned()
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a regex engine.
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// DNS-1123 label (RFC 1123), e.g. namespace names.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // Length was already checked, so the only difference is dots.
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// DNS-1123 subdomain (RFC 1123), the rule for most object names.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// DNS-1035 label (RFC 1035): must start with a letter; Service names.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    let starts_with_letter = value.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !(starts_with_letter && matches_dns1123_label(value)) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Names must be usable as one URL path segment (`IsValidPathSegmentName`).
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Which DNS rule an object name must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

/// Validates `metadata.name`, or with `prefix` a `generateName` base: a
/// prefix may end in `-` because a suffix will follow, so a trailing dash is
/// masked before checking (upstream `maskTrailingDash`).
pub fn validate_name(name: &str, rule: NameRule, prefix: bool) -> Vec<String> {
    let masked;
    let checked = if prefix && name.len() >= 2 && name.ends_with('-') {
        // Upstream drops the dash *and* the character before it, then adds
        // "a"; kept as is so the same prefixes pass and fail.
        let mut m = name[..name.len() - 1].to_owned();
        m.pop();
        m.push('a');
        masked = m;
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Dns1123Subdomain => is_dns1123_subdomain(checked),
        NameRule::Dns1123Label => is_dns1123_label(checked),
        NameRule::Dns1035Label => is_dns1035_label(checked),
    }
}

/// A source of random indices, so suffix generation is testable.
pub trait RandomIndex {
    /// A uniformly random number in `0..n` (`n > 0`).
    fn index(&mut self, n: usize) -> usize;
}

/// [`RandomIndex`] backed by a thread-local fast PRNG; name suffixes need
/// spread, not unpredictability.
#[derive(Debug, Default)]
pub struct FastRandom;

impl RandomIndex for FastRandom {
    fn index(&mut self, n: usize) -> usize {
        fastrand::usize(..n)
    }
}

/// A random 5-character suffix from [`GENERATE_NAME_ALPHABET`].
pub fn random_suffix(rng: &mut dyn RandomIndex) -> String {
    (0..GENERATE_NAME_RANDOM_LENGTH)
        .map(|_| {
            let i = rng.index(GENERATE_NAME_ALPHABET.len()) % GENERATE_NAME_ALPHABET.len();
            GENERATE_NAME_ALPHABET[i] as char
        })
        .collect()
}

/// `generateName` + suffix, the base cut so the result fits a DNS label
/// (upstream `SimpleNameGenerator.GenerateName`).
pub fn generate_name(base: &str, rng: &mut dyn RandomIndex) -> String {
    let mut cut = base.len().min(MAX_GENERATED_BASE_LENGTH);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], random_suffix(rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a fixed sequence of indices.
    struct Scripted(Vec<usize>);

    impl RandomIndex for Scripted {
        fn index(&mut self, n: usize) -> usize {
            let v = self.0.remove(0);
            assert!(v < n);
            v
        }
    }

    #[test]
    fn labels() {
        for ok in ["a", "abc", "a-b", "0", "a1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            is_dns1123_label("A"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        for bad in ["", "-a", "a-", "a_b", "a b"] {
            assert_eq!(is_dns1123_label(bad).len(), 1, "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        for ok in ["a", "a.b", "my-app.example.com", "0.0"] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            is_dns1123_subdomain("Foo"),
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        for bad in ["", ".a", "a.", "a..b", "a_b"] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad}");
        }
        let long = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        assert_eq!(long.len(), 254);
        assert_eq!(
            is_dns1123_subdomain(&long),
            vec!["must be no more than 253 characters"]
        );
    }

    #[test]
    fn dns1035() {
        assert!(is_dns1035_label("my-svc").is_empty());
        assert_eq!(is_dns1035_label("1svc").len(), 1);
        assert!(is_dns1035_label("1svc")[0].starts_with("a DNS-1035 label must consist"));
    }

    #[test]
    fn path_segments() {
        assert!(is_valid_path_segment_name("ok").is_empty());
        assert_eq!(is_valid_path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(
            is_valid_path_segment_name("a/b%c"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn generate_name_prefixes_may_end_in_dash() {
        assert!(validate_name("web-", NameRule::Dns1123Subdomain, true).is_empty());
        assert_eq!(
            validate_name("web-", NameRule::Dns1123Subdomain, false).len(),
            1
        );
        assert_eq!(validate_name("-", NameRule::Dns1123Label, true).len(), 1);
        assert!(validate_name("db", NameRule::Dns1035Label, false).is_empty());
    }

    #[test]
    fn suffixes_use_upstream_alphabet() {
        let mut rng = Scripted(vec![0, 1, 26, 20, 3]);
        assert_eq!(generate_name("web-", &mut rng), "web-bc92f");
        let mut real = FastRandom;
        for _ in 0..200 {
            let s = random_suffix(&mut real);
            assert_eq!(s.len(), 5);
            assert!(
                s.bytes().all(|b| GENERATE_NAME_ALPHABET.contains(&b)),
                "{s}"
            );
        }
    }

    #[test]
    fn long_bases_are_cut_to_fit_a_label() {
        let base = "x".repeat(80);
        let name = generate_name(&base, &mut FastRandom);
        assert_eq!(name.len(), 63);
        assert!(name.starts_with(&"x".repeat(58)));
        assert!(is_dns1123_label(&name).is_empty());
        // Never splits a multi-byte character.
        let base = "é".repeat(40);
        assert!(generate_name(&base, &mut FastRandom).len() <= 63);
    }
}
