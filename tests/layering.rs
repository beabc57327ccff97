//! The layering rule, checked on the source: `http`, `api`, `ws`, `edge` and `tls` never import
//! the gateway's `shard` module, `edge` (the sans-IO edge limits) imports nothing of the
//! gateway at all, and the `ws2api-shards` substrate knows nothing of HTTP or WebSocket
//! (nor of the gateway built on it).
//!
//! Only code is read: comments are cut off, and only paths (`a::b`) and `use` / `extern
//! crate` items are looked at, so prose that mentions a layer is no violation.

use std::fs;
use std::path::{Path, PathBuf};

/// The root of the gateway crate (this test's package).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of each line (1-based number, text), with `//` comments and `/* */` blocks cut.
fn code_lines(source: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut in_block = false;
    for (i, line) in source.lines().enumerate() {
        let mut code = String::new();
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), Some(b)) if b < l => {
                        code.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (None, Some(b)) => {
                        code.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    (Some(l), _) => {
                        code.push_str(&rest[..l]);
                        break;
                    }
                    (None, None) => {
                        code.push_str(rest);
                        break;
                    }
                }
            }
        }
        lines.push((i + 1, code));
    }
    lines
}

/// The `use` and `extern crate` items of a file (joined over lines, whitespace removed),
/// and every other path (`a::b::c`) in its code, each with the line it starts on.
fn imports_and_paths(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut open_use: Option<(usize, String)> = None;
    for (n, code) in code_lines(source) {
        let trimmed = skip_attributes(code.trim_start());
        const ITEMS: [&str; 5] = [
            "use ",
            "pub use ",
            "pub(crate) use ",
            "pub(super) use ",
            "extern crate ",
        ];
        let mut code = code.as_str();
        if open_use.is_none() {
            if let Some(item) = ITEMS.iter().find(|p| trimmed.starts_with(*p)) {
                open_use = Some((n, String::new()));
                code = &trimmed[item.len()..];
            }
        }
        if let Some((start, text)) = &mut open_use {
            for word in code.split_whitespace() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(word);
            }
            if code.contains(';') {
                found.push((*start, std::mem::take(text)));
                open_use = None;
            }
            continue;
        }
        let is_path_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        for token in code.split(|c: char| !is_path_char(c)) {
            if token.contains("::") {
                found.push((n, token.to_string()));
            }
        }
    }
    found
}

/// `code` after any leading attributes (`#[cfg(test)] use ...`).
fn skip_attributes(mut code: &str) -> &str {
    while code.starts_with("#[") {
        let mut depth = 0;
        // From the `[`: the `#` before it is at depth 0.
        let Some(end) = code.char_indices().skip(1).find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        }) else {
            return code;
        };
        code = code[end + 1..].trim_start();
    }
    code
}

/// The path segments of an import or path: `use crate::{shard::X, y}` gives
/// `crate`, `shard`, `X`, `y`, in order.
fn segments(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Why `text` (an import or a path, in a file of `http`, `api` or `ws`) reaches the
/// gateway's `shard` module, if it does.
fn reaches_shard(text: &str) -> Option<String> {
    let segs = segments(text);
    let rooted = matches!(segs.first(), Some(&("crate" | "super" | "self" | "ws2api")));
    (rooted && segs.contains(&"shard")).then(|| format!("`{text}` reaches the shard module"))
}

/// Why `text` (an import or a path, in a file of `http`, `api` or `ws`) reaches the
/// gateway's `error` module, which gathers their errors and so sits above them.
fn reaches_error(text: &str) -> Option<String> {
    let segs = segments(text);
    let rooted = matches!(segs.first(), Some(&("crate" | "super" | "self" | "ws2api")));
    (rooted && segs.contains(&"error")).then(|| format!("`{text}` reaches the error module"))
}

/// Why `text` (an import or a path in `shards/src`) knows of HTTP, WebSocket or the
/// gateway, if it does.
fn knows_the_protocols(text: &str) -> Option<String> {
    segments(text).into_iter().find_map(|seg| {
        let seg = seg.to_ascii_lowercase();
        let banned = seg.contains("http")
            || seg.contains("tungstenite")
            || seg.contains("websocket")
            || seg == "ws"
            || seg == "ws2api";
        banned.then(|| format!("`{text}` names `{seg}`"))
    })
}

/// Every violation of `rule` in the Rust files under `dirs` (relative to the root).
fn violations(dirs: &[&str], rule: fn(&str) -> Option<String>) -> Vec<String> {
    let mut found = Vec::new();
    for dir in dirs {
        for file in rust_files(&root().join(dir)) {
            let source = fs::read_to_string(&file).unwrap();
            for (line, text) in imports_and_paths(&source) {
                if let Some(why) = rule(&text) {
                    let shown = file.strip_prefix(root()).unwrap_or(&file).display();
                    found.push(format!("{shown}:{line}: {why}"));
                }
            }
        }
    }
    found
}

#[test]
fn http_api_and_ws_never_import_the_shard_module() {
    let found = violations(
        &["src/http", "src/api", "src/ws", "src/edge", "src/tls"],
        reaches_shard,
    );
    assert!(
        found.is_empty(),
        "dependencies point one way (shard -> http, api, ws):\n{}",
        found.join("\n")
    );
}

#[test]
fn http_api_and_ws_have_errors_of_their_own() {
    let found = violations(
        &["src/http", "src/api", "src/ws", "src/edge", "src/tls"],
        reaches_error,
    );
    assert!(
        found.is_empty(),
        "each layer has its own error; crate::error gathers them (error -> http, api):\n{}",
        found.join("\n")
    );
}

/// Why `text` (an import or a path in `src/edge`) reaches another module of the gateway.
fn leaves_edge(text: &str) -> Option<String> {
    let segs = segments(text);
    let outside = matches!(segs.first(), Some(&("crate" | "ws2api")))
        && segs.get(1).is_some_and(|s| *s != "edge");
    outside.then(|| format!("`{text}` reaches outside `edge`"))
}

#[test]
fn the_edge_limits_are_a_leaf() {
    let found = violations(&["src/edge"], leaves_edge);
    assert!(
        found.is_empty(),
        "edge is sans-IO and below every layer that applies it:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shards_substrate_knows_nothing_of_http_or_websocket() {
    let found = violations(&["shards/src"], knows_the_protocols);
    assert!(
        found.is_empty(),
        "ws2api-shards must stay protocol-free:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shards_crate_depends_on_nothing_of_http_or_websocket() {
    let manifest = fs::read_to_string(root().join("shards/Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut found = Vec::new();
    for (i, line) in manifest.lines().enumerate() {
        let line = line.split('#').next().unwrap().trim();
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        // `[dependencies]`, `[dev-dependencies]`, `[target.'cfg(..)'.dependencies]`, and
        // `[dependencies.NAME]` tables.
        if !section.contains("dependencies") {
            continue;
        }
        let name = match section.rsplit_once("dependencies.") {
            Some((_, table)) => table.to_string(),
            None => match line.split_once('=') {
                Some((key, _)) => key.trim().trim_matches('"').to_string(),
                None => continue,
            },
        };
        let lower = name.to_ascii_lowercase();
        let package = line
            .split_once("package")
            .map(|(_, p)| p.to_ascii_lowercase())
            .unwrap_or_default();
        for word in ["http", "tungstenite", "websocket", "ws2api"] {
            if lower.contains(word) || package.contains(word) {
                found.push(format!("shards/Cargo.toml:{}: [{section}] {name}", i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "ws2api-shards must stay protocol-free:\n{}",
        found.join("\n")
    );
}

/// The checks themselves: what they must catch and what they must let pass.
#[test]
fn the_checks_catch_what_they_should_and_only_that() {
    let caught = |source: &str, rule: fn(&str) -> Option<String>| {
        imports_and_paths(source)
            .iter()
            .any(|(_, text)| rule(text).is_some())
    };
    assert!(caught("use crate::ws::Conn;\n", leaves_edge));
    assert!(caught(
        "fn f() { crate::config::Config::x(); }\n",
        leaves_edge
    ));
    assert!(!caught(
        "use crate::edge::rate::Rate;\nuse super::Bucket;\n",
        leaves_edge
    ));
    assert!(!caught("use std::net::IpAddr;\n", leaves_edge));
    for bad in [
        "use crate::shard::ShardMsg;\n",
        "use crate::{\n    error::Side,\n    shard::ShardMsg,\n};\n",
        "pub use super::super::shard;\n",
        "fn f() { let _ = crate::shard::ShardMsg::Stop; }\n",
        "use ws2api::shard::tracker;\n",
        "#[cfg(test)] use crate::shard::tracker;\n",
    ] {
        assert!(caught(bad, reaches_shard), "not caught: {bad}");
    }
    for fine in [
        "// use crate::shard::ShardMsg;\n",
        "/// The shard that owns it; see crate::shard.\n",
        "use ws2api_shards::shard_of;\n",
        "use crate::client_id::ClientId; // not crate::shard\n",
        "/* crate::shard::X */ use crate::error::Side;\n",
        "let msg = \"shard is stopping\";\n",
    ] {
        assert!(!caught(fine, reaches_shard), "false positive: {fine}");
    }
    for bad in [
        "use httparse::Request;\n",
        "extern crate tungstenite;\n",
        "#[cfg(any())] use httparse as _unused;\n",
        "use crate::ws::codec;\n",
        "fn f() { ws2api::http::parse(); }\n",
    ] {
        assert!(caught(bad, knows_the_protocols), "not caught: {bad}");
    }
    for fine in [
        "//! It knows nothing of HTTP or WebSocket.\n",
        "use glommio::net::TcpStream;\n",
        "let hello = b\"GET / HTTP/1.1\\r\\n\";\n",
    ] {
        assert!(!caught(fine, knows_the_protocols), "false positive: {fine}");
    }
}
