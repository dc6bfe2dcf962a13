//! Builds the protobuf schema table of every Kubernetes message from the
//! prost-generated sources of the `k8s-pb` crate.
//!
//! Upstream counterpart: the `generated.proto` files of k8s.io/api,
//! apimachinery, apiextensions-apiserver and kube-aggregator, which k8s-pb
//! turns into Rust. We only read those sources (found through `cargo
//! metadata`) for facts — message names, field tags, wire kinds and message
//! references — and emit a compact table to `$OUT_DIR/schema_table.rs`; none
//! of k8s-pb's code is compiled into this crate.
//!
//! `data/go_fields.txt` adds what the protos cannot say: which Go fields are
//! pointers or lack `omitempty`, i.e. when a zero value still belongs in the
//! JSON form.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One field as k8s-pb declares it.
struct Field {
    tag: u32,
    name: String,
    /// `string`, `bytes`, `bool`, `int32`, `int64`, `double` or `message`.
    kind: String,
    /// `single`, `repeated` or `map` (maps always have string keys).
    label: &'static str,
    /// The referenced message as `package.Name`, for message kinds.
    message: Option<String>,
}

struct Message {
    fields: Vec<Field>,
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=data/go_fields.txt");
    let src = k8s_pb_source_dir();
    let mut messages = BTreeMap::new();
    let mut group_versions = BTreeMap::new();
    let mut files = Vec::new();
    collect_mod_files(&src, &mut files);
    files.sort();
    for file in &files {
        let module = file
            .parent()
            .and_then(|dir| dir.strip_prefix(&src).ok())
            .map(|rel| {
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        parse_module(&module, &text, &mut messages, &mut group_versions);
    }
    assert!(
        messages.len() > 500,
        "found only {} messages under {}; is this k8s-pb?",
        messages.len(),
        src.display()
    );
    let go_fields = read_go_fields();
    let out = emit(&messages, &group_versions, &go_fields);
    let out_path =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("schema_table.rs");
    std::fs::write(&out_path, out).expect("writing schema table");
}

/// The `src` directory of the k8s-pb package in this workspace's resolve.
fn k8s_pb_source_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    // Offline first: the package is normally already in the local registry
    // because it is a dev-dependency; a fresh machine may need one download.
    let mut output = None;
    for offline in [true, false] {
        let mut command = Command::new(&cargo);
        command
            .args(["metadata", "--format-version", "1"])
            .current_dir(&manifest_dir);
        if offline {
            command.arg("--offline");
        }
        match command.output() {
            Ok(o) if o.status.success() => {
                output = Some(o.stdout);
                break;
            }
            Ok(o) => println!(
                "cargo:warning=cargo metadata (offline={offline}) failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("cargo:warning=running cargo metadata: {e}"),
        }
    }
    let output = output.expect("cargo metadata failed; cannot locate k8s-pb sources");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output).expect("cargo metadata printed invalid JSON");
    // A k8s-pb upgrade shows up as a lockfile change.
    if let Some(root) = metadata["workspace_root"].as_str() {
        println!("cargo:rerun-if-changed={root}/Cargo.lock");
    }
    let packages = metadata["packages"].as_array().expect("metadata packages");
    let manifest = packages
        .iter()
        .filter(|p| p["name"] == "k8s-pb")
        .filter(|p| p["version"].as_str().is_some_and(|v| v.starts_with("0.9.")))
        .filter_map(|p| p["manifest_path"].as_str())
        .next()
        .expect(
            "k8s-pb 0.9 is not in the dependency graph (it is a dev-dependency of rkube-protobuf)",
        );
    Path::new(manifest)
        .parent()
        .expect("manifest has a directory")
        .join("src")
}

fn collect_mod_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_mod_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            out.push(path);
        }
    }
}

/// Reads the top-level structs and `impl crate::Resource` blocks of one
/// prost-generated module. The generated layout is regular: an attribute
/// line `#[prost(...)]`, then `pub name: Type,` possibly over several lines.
fn parse_module(
    module: &[String],
    text: &str,
    messages: &mut BTreeMap<String, Message>,
    group_versions: &mut BTreeMap<(String, String), String>,
) {
    let package = module.join(".");
    let mut current: Option<(String, Vec<Field>)> = None;
    let mut attr: Option<String> = None;
    let mut decl = String::new();
    let mut resource: Option<(Option<String>, Option<String>)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(name) = rest.strip_suffix(" {") {
                current = Some((name.trim().to_owned(), Vec::new()));
            } else if let Some(name) = rest.strip_suffix(" {}") {
                messages.insert(
                    format!("{package}.{}", name.trim()),
                    Message { fields: Vec::new() },
                );
            }
            continue;
        }
        if line.starts_with("impl crate::Resource for ") {
            resource = Some((None, None));
            continue;
        }
        if let Some((group, version)) = resource.as_mut() {
            if line.starts_with('}') {
                if let (Some(g), Some(v)) = (group.take(), version.take()) {
                    let previous = group_versions.insert((g.clone(), v.clone()), package.clone());
                    assert!(
                        previous.is_none_or(|p| p == package),
                        "{g}/{v} maps to two packages"
                    );
                }
                resource = None;
            } else if let Some(value) = const_value(trimmed, "GROUP") {
                *group = Some(value);
            } else if let Some(value) = const_value(trimmed, "VERSION") {
                *version = Some(value);
            }
            continue;
        }
        let Some((name, fields)) = current.as_mut() else {
            continue;
        };
        if line.starts_with('}') {
            messages.insert(
                format!("{package}.{name}"),
                Message {
                    fields: std::mem::take(fields),
                },
            );
            current = None;
            attr = None;
            continue;
        }
        if trimmed.starts_with("#[prost(") {
            attr = Some(trimmed.to_owned());
            decl.clear();
            continue;
        }
        if attr.is_some() && (trimmed.starts_with("pub ") || !decl.is_empty()) {
            decl.push_str(trimmed);
            if decl.ends_with(',') && depth(&decl) == 0 {
                let attribute = attr.take().unwrap_or_default();
                fields.push(parse_field(module, &attribute, &decl));
                decl.clear();
            }
        }
    }
}

fn const_value(line: &str, name: &str) -> Option<String> {
    let rest = line.strip_prefix(&format!("const {name}: &'static str = \""))?;
    Some(rest.strip_suffix("\";")?.to_owned())
}

fn depth(text: &str) -> i32 {
    text.chars().fold(0, |d, c| match c {
        '<' => d + 1,
        '>' => d - 1,
        _ => d,
    })
}

fn parse_field(module: &[String], attr: &str, decl: &str) -> Field {
    let inner = attr
        .strip_prefix("#[prost(")
        .and_then(|s| s.strip_suffix(")]"))
        .unwrap_or_else(|| panic!("unexpected attribute {attr}"));
    let tag = inner
        .split("tag = \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no tag in {attr}"));
    let (name, ty) = decl
        .strip_prefix("pub ")
        .and_then(|s| s.split_once(':'))
        .unwrap_or_else(|| panic!("unexpected field {decl}"));
    let name = name.trim().trim_start_matches("r#").to_owned();
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    // rustfmt leaves a trailing comma inside generics split over lines.
    let ty = ty.replace(",>", ">");
    let ty = ty.trim_end_matches(',');
    let (kind, label, type_path) = if let Some(map) = inner.strip_prefix("btree_map = \"") {
        let spec = map.split('"').next().unwrap_or_default();
        let (key, value) = spec
            .split_once(", ")
            .unwrap_or_else(|| panic!("map {attr}"));
        assert_eq!(key, "string", "only string-keyed maps are expected: {attr}");
        // BTreeMap<Key,Value>: the value type follows the first top-level comma.
        let args = ty
            .split_once('<')
            .map(|(_, rest)| rest.trim_end_matches('>'))
            .unwrap_or_default();
        let value_type = args.split_once(',').map(|(_, v)| v).unwrap_or_default();
        (value.to_owned(), "map", value_type.to_owned())
    } else {
        let kind = inner.split(',').next().unwrap_or_default().trim();
        let kind = kind.split(' ').next().unwrap_or_default();
        let label = if inner.contains("repeated") {
            "repeated"
        } else {
            "single"
        };
        let mut path = ty;
        for wrapper in [
            "::core::option::Option<",
            "::prost::alloc::vec::Vec<",
            "::prost::alloc::boxed::Box<",
        ] {
            if let Some(rest) = path.strip_prefix(wrapper) {
                path = rest.strip_suffix('>').unwrap_or(rest);
            }
        }
        (kind.to_owned(), label, path.to_owned())
    };
    assert!(
        matches!(
            kind.as_str(),
            "string" | "bytes" | "bool" | "int32" | "int64" | "double" | "message"
        ),
        "unexpected field kind in {attr}"
    );
    let message = (kind == "message").then(|| resolve(module, &type_path));
    Field {
        tag,
        name,
        kind,
        label,
        message,
    }
}

/// Turns a Rust path relative to `module` (`super::super::x::Y`, `Y`,
/// `crate::x::Y`) into `x.Y`.
fn resolve(module: &[String], path: &str) -> String {
    let mut segments: Vec<&str> = module.iter().map(String::as_str).collect();
    let mut parts = path.split("::").peekable();
    if parts.peek() == Some(&"crate") {
        segments.clear();
        parts.next();
    }
    for part in parts {
        if part == "super" {
            segments.pop();
        } else {
            segments.push(part);
        }
    }
    segments.join(".")
}

/// `package.Message tag flags` lines, keyed by lower-cased message name
/// (Go spells `CSIDriver` where prost spells `CsiDriver`).
fn read_go_fields() -> HashMap<(String, u32), String> {
    let text = std::fs::read_to_string("data/go_fields.txt").unwrap_or_default();
    let mut fields = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut words = line.split_whitespace();
        let (Some(message), Some(tag), Some(flags)) = (words.next(), words.next(), words.next())
        else {
            panic!("bad line in data/go_fields.txt: {line}");
        };
        let tag = tag.parse().unwrap_or_else(|_| panic!("bad tag in {line}"));
        fields.insert((message.to_lowercase(), tag), flags.to_owned());
    }
    fields
}

fn emit(
    messages: &BTreeMap<String, Message>,
    group_versions: &BTreeMap<(String, String), String>,
    go_fields: &HashMap<(String, u32), String>,
) -> String {
    let index: HashMap<&str, usize> = messages
        .keys()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let go_messages: std::collections::HashSet<&str> =
        go_fields.keys().map(|(m, _)| m.as_str()).collect();
    let mut out = String::new();
    out.push_str("// Generated by build.rs from the k8s-pb sources; do not edit.\n");
    out.push_str("pub(crate) static MESSAGES: &[MessageDef] = &[\n");
    for (full_name, message) in messages {
        let (package, name) = full_name.rsplit_once('.').unwrap_or(("", full_name));
        let lower = full_name.to_lowercase();
        let known = go_messages.contains(lower.as_str());
        let _ = write!(
            out,
            "MessageDef {{ package: {package:?}, name: {name:?}, fields: &["
        );
        let mut fields: Vec<&Field> = message.fields.iter().collect();
        fields.sort_by_key(|f| f.tag);
        for field in fields {
            let kind = match field.kind.as_str() {
                "string" => "Kind::String".to_owned(),
                "bytes" => "Kind::Bytes".to_owned(),
                "bool" => "Kind::Bool".to_owned(),
                "int32" => "Kind::Int32".to_owned(),
                "int64" => "Kind::Int64".to_owned(),
                "double" => "Kind::Double".to_owned(),
                _ => {
                    let target = field.message.as_deref().unwrap_or_default();
                    let i = index.get(target).unwrap_or_else(|| {
                        panic!("{full_name}.{}: unknown message {target}", field.name)
                    });
                    format!("Kind::Message({i})")
                }
            };
            let label = match field.label {
                "repeated" => "Label::Repeated",
                "map" => "Label::Map",
                _ => "Label::Single",
            };
            let zero = match go_fields.get(&(lower.clone(), field.tag)) {
                Some(flags) if flags.contains('p') || flags.contains('e') => "Zero::Emit",
                Some(_) => "Zero::Omit",
                None if known => "Zero::Omit",
                None => "Zero::Unknown",
            };
            let inline = go_fields
                .get(&(lower.clone(), field.tag))
                .is_some_and(|flags| flags.contains('i'));
            let _ = write!(
                out,
                "FieldDef {{ tag: {}, name: {:?}, kind: {kind}, label: {label}, zero: {zero}, inline: {inline} }},",
                field.tag, field.name
            );
        }
        out.push_str("] },\n");
    }
    out.push_str("];\n");
    out.push_str("pub(crate) static GROUP_VERSIONS: &[(&str, &str, &str)] = &[\n");
    for ((group, version), package) in group_versions {
        let _ = writeln!(out, "({group:?}, {version:?}, {package:?}),");
    }
    out.push_str("];\n");
    out
}
