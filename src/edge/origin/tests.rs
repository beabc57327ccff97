use proptest::prelude::*;

use super::*;

fn list(s: &str) -> AllowedOrigins {
    AllowedOrigins::parse(s).unwrap()
}

#[test]
fn exact_origins_match_scheme_host_and_port() {
    let allowed = list("https://app.example.com, http://localhost:8080");
    assert!(allowed.allows(b"https://app.example.com"));
    assert!(allowed.allows(b"https://APP.Example.COM"), "host case");
    assert!(allowed.allows(b"HTTPS://app.example.com"), "scheme case");
    assert!(
        allowed.allows(b"https://app.example.com:443"),
        "default port"
    );
    assert!(!allowed.allows(b"https://app.example.com:8443"));
    assert!(!allowed.allows(b"http://app.example.com"), "scheme");
    assert!(allowed.allows(b"http://localhost:8080"));
    assert!(!allowed.allows(b"http://localhost"));
    assert!(!allowed.allows(b"http://localhost:80"));
    assert!(!allowed.allows(b"https://example.com"));
    assert!(!allowed.allows(b"https://app.example.com.evil.test"));
    assert!(
        !allowed.allows(b"https://evil.app.example.com"),
        "exact is not a wildcard"
    );
}

#[test]
fn a_wildcard_matches_subdomains_only() {
    let allowed = list("https://*.example.com");
    assert!(allowed.allows(b"https://a.example.com"));
    assert!(allowed.allows(b"https://a.b.example.com"));
    assert!(allowed.allows(b"https://A.EXAMPLE.com:443"));
    assert!(
        !allowed.allows(b"https://example.com"),
        "not the domain itself"
    );
    assert!(
        !allowed.allows(b"https://evilexample.com"),
        "label boundary"
    );
    assert!(
        !allowed.allows(b"https://a.example.com.evil.test"),
        "suffix confusion"
    );
    assert!(!allowed.allows(b"https://a.example.com:444"), "port");
    assert!(!allowed.allows(b"http://a.example.com"), "scheme");
    assert!(!allowed.allows(b"https://.example.com"), "empty label");
}

#[test]
fn garbage_and_null_origins() {
    let allowed = list("https://a.test");
    for bad in [
        &b""[..],
        b"a.test",
        b"https://",
        b"https://a.test/",
        b"https://a.test/path",
        b"https://user@a.test",
        b"https://a.test:",
        b"https://a.test:99999",
        b"https://a.test:-1",
        b"\xff\xfe",
        b"null",
    ] {
        assert!(!allowed.allows(bad), "{:?}", String::from_utf8_lossy(bad));
    }
    assert!(list("null").allows(b"null"));
    assert!(list("https://[::1]:8443").allows(b"https://[::1]:8443"));
}

#[test]
fn bad_entries_are_refused_with_the_entry_named() {
    for bad in [
        "",
        "https://a.test,",
        "a.test",
        "https://a.test/",
        "https://*",
        "https://*.",
        "https://a.*.test",
        "https://*a.test",
        "https://a.test:http",
        "*://a.test",
        "https://a..test",
    ] {
        let e = AllowedOrigins::parse(bad).unwrap_err();
        assert!(!e.to_string().is_empty(), "{bad}");
    }
    let e = AllowedOrigins::parse("https://ok.test, https://a.*.test").unwrap_err();
    assert!(e.to_string().contains("https://a.*.test"), "{e}");
    assert_eq!(list(" https://a.test , https://*.b.test ").len(), 2);
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
}

fn flip_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| match mask >> (i % 64) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c,
        })
        .collect()
}

proptest! {
    #[test]
    fn an_exact_entry_matches_itself_in_any_case_and_nothing_longer(
        host in domain(), evil in domain(), mask in any::<u64>(), port in 1u16..,
    ) {
        let allowed = list(&format!("https://{host}:{port}"));
        let with_port = format!("https://{host}:{port}");
        prop_assert!(allowed.allows(flip_case(&with_port, mask).as_bytes()));
        let suffixed = format!("https://{host}.{evil}:{port}");
        prop_assert!(!allowed.allows(suffixed.as_bytes()));
        let prefixed = format!("https://{evil}.{host}:{port}");
        prop_assert!(!allowed.allows(prefixed.as_bytes()));
        let other_port = format!("https://{host}:{}", port.wrapping_add(1).max(1));
        prop_assert_eq!(allowed.allows(other_port.as_bytes()), port.wrapping_add(1).max(1) == port);
        let glued = format!("https://{evil}{host}:{port}");
        prop_assert!(!allowed.allows(glued.as_bytes()));
    }

    #[test]
    fn a_wildcard_matches_exactly_the_strict_subdomains(
        base in domain(), sub in domain(), evil in domain(), mask in any::<u64>(),
    ) {
        let allowed = list(&format!("https://*.{base}"));
        let subdomain = format!("https://{sub}.{base}");
        prop_assert!(allowed.allows(flip_case(&subdomain, mask).as_bytes()));
        let base_itself = format!("https://{base}");
        prop_assert!(!allowed.allows(base_itself.as_bytes()));
        // Ends in another domain: a match only if that one is itself under the base.
        let confused = format!("https://{sub}.{base}.{evil}");
        let under = confused["https://".len()..].ends_with(&format!(".{base}"));
        prop_assert_eq!(allowed.allows(confused.as_bytes()), under);
        // Glued to the base without a dot: only a match if it happens to be a subdomain.
        let glued = format!("https://{sub}{base}");
        let is_sub = glued["https://".len()..].ends_with(&format!(".{base}"));
        prop_assert_eq!(allowed.allows(glued.as_bytes()), is_sub);
        let http = format!("http://{sub}.{base}");
        prop_assert!(!allowed.allows(http.as_bytes()));
    }

    #[test]
    fn no_input_panics(origin in any::<Vec<u8>>(), entry in "\\PC{0,40}") {
        let _ = AllowedOrigins::parse(&entry);
        let _ = list("https://*.a.test, http://b.test:81").allows(&origin);
    }
}
