//! Reading tool servers: `*.server.yaml` files and `servers.yaml` (config.md §2.5, §2.6).

use super::common::{is_identifier, req_literal, template_field};
use super::workflow::{is_http_url, read_auth_header};
use crate::project::model::{AuthScheme, ServerAuth, ServerParam, ServersManifest, ToolServer};
use crate::project::read::{index_path, key_path, Obj, Reader};
use crate::yaml::Node;

const SERVER_FIELDS: &[&str] = &[
    "kind",
    "name",
    "description",
    "url",
    "timeout_s",
    "auth",
    "params",
];

/// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`
pub fn is_server_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub fn read_server_file(r: &mut Reader, root: &Node) -> Option<ToolServer> {
    let obj = r.object(root, "", "tool server", SERVER_FIELDS)?;
    if let Some(node) = obj.get("kind") {
        r.one_of(node, "kind", &["tool-server"]);
    }
    read_server_body(r, &obj, "")
}

pub fn read_manifest(r: &mut Reader, root: &Node) -> Option<ServersManifest> {
    let obj = r.object(root, "", "servers manifest", &["kind", "servers"])?;
    if let Some(node) = obj.get("kind") {
        r.one_of(node, "kind", &["servers"]);
    }
    let Some(list) = obj.get("servers") else {
        r.missing(&obj, "", "servers", "servers manifest");
        return Some(ServersManifest::default());
    };
    let mut servers: Vec<ToolServer> = Vec::new();
    for (i, item) in r
        .seq(list, "servers")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = index_path("servers", i);
        let fields: Vec<&str> = SERVER_FIELDS
            .iter()
            .copied()
            .filter(|f| *f != "kind")
            .collect();
        let Some(entry) = r.object(item, &p, "servers manifest entry", &fields) else {
            continue;
        };
        let Some(server) = read_server_body(r, &entry, &p) else {
            continue;
        };
        if let Some(first) = servers.iter().find(|s| s.name.value == server.name.value) {
            r.duplicate_name("server", &server.name, first.name.pos);
            continue;
        }
        servers.push(server);
    }
    Some(ServersManifest { servers })
}

fn read_server_body(r: &mut Reader, obj: &Obj<'_>, path: &str) -> Option<ToolServer> {
    let name = req_literal(r, obj, path, "name", "tool server")
        .filter(|n| r.check_pattern(n, is_server_name, "`^[A-Za-z0-9][A-Za-z0-9_.-]*$`"));
    let description = r.opt_string(obj, path, "description").map(|s| s.value);
    let url = req_literal(r, obj, path, "url", "tool server").filter(|u| {
        if is_http_url(&u.value) {
            true
        } else {
            r.error(
                "invalid_value",
                u.pos,
                &u.path,
                format!("`{}` is not an absolute http(s) URL", u.value),
            );
            false
        }
    });
    let timeout_s = r.opt_u64(obj, path, "timeout_s", 1).unwrap_or(60);
    let params = obj
        .get("params")
        .map(|n| read_server_params(r, n, &key_path(path, "params")))
        .unwrap_or_default();
    let auth = obj
        .get("auth")
        .and_then(|n| read_server_auth(r, n, &key_path(path, "auth")));
    Some(ToolServer {
        name: name?,
        description,
        url: url?,
        timeout_s,
        auth,
        params,
    })
}

fn read_server_auth(r: &mut Reader, node: &Node, path: &str) -> Option<ServerAuth> {
    let obj = r.object(node, path, "server `auth`", &["header", "scheme", "secret"])?;
    let header = read_auth_header(r, &obj, path);
    let scheme = match r.opt_one_of(&obj, path, "scheme", &["bearer", "raw"]) {
        Some(v) if v.value == "raw" => AuthScheme::Raw,
        _ => AuthScheme::Bearer,
    };
    let secret = match obj.get("secret") {
        None => {
            r.missing(&obj, path, "secret", "server `auth`");
            None
        }
        Some(n) => template_field(r, n, &key_path(path, "secret")),
    };
    Some(ServerAuth {
        pos: node.pos,
        header,
        scheme,
        secret,
    })
}

fn read_server_params(r: &mut Reader, node: &Node, path: &str) -> Vec<ServerParam> {
    let Some(entries) = node.as_map() else {
        r.type_mismatch(node, path, "a mapping of param declarations");
        return Vec::new();
    };
    let mut params = Vec::new();
    for e in entries {
        let p = key_path(path, &e.key);
        if !is_identifier(&e.key) {
            r.error(
                "invalid_value",
                e.key_pos,
                &p,
                format!(
                    "param name `{}` must match `^[A-Za-z_][A-Za-z0-9_]*$`",
                    e.key
                ),
            );
            continue;
        }
        // `token: {}` and `token:` (null) both declare a required param with no options.
        let (description, default, secret) = if e.value.is_null() {
            (None, None, false)
        } else {
            let Some(o) = r.object(
                &e.value,
                &p,
                "server param",
                &["description", "default", "secret"],
            ) else {
                continue;
            };
            let description = r.opt_string(&o, &p, "description").map(|s| s.value);
            let secret = r.opt_bool(&o, &p, "secret").unwrap_or(false);
            let default = o.get("default").and_then(|d| {
                let dp = key_path(&p, "default");
                if let Some(text) = d.as_str() {
                    if !super::common::check_literal_text(r, text, d.pos, &dp) {
                        return None;
                    }
                }
                match d.to_json() {
                    Ok(v) => Some(v),
                    Err(pos) => {
                        r.error(
                            "invalid_value",
                            pos,
                            &dp,
                            "`.inf` and `.nan` are not allowed",
                        );
                        None
                    }
                }
            });
            if secret {
                if let Some(d) = o.entry("default") {
                    r.error(
                        "secret_default",
                        d.key_pos,
                        &key_path(&p, "default"),
                        format!("secret param `{}` must not have a default", e.key),
                    );
                }
            }
            (description, default, secret)
        };
        params.push(ServerParam {
            name: crate::project::read::Spanned::new(e.key.clone(), e.key_pos, p),
            description,
            default,
            secret,
        });
    }
    params
}
